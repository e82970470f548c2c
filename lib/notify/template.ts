/**
 * A tiny mustache-like renderer for notification templates: `{{path.to.value}}` is replaced by the
 * value, escaped for the channel it goes to (HTML for Telegram, Markdown for Discord, a JSON string
 * for a webhook body…); `{{{path}}}` inserts it unescaped. Missing values render as an empty string,
 * objects as JSON. Nothing else (no sections, no code): templates are text a user edits in a dialog.
 */

export type Escaper = (text: string) => string;

const TAG = /\{\{\{\s*([A-Za-z0-9_.$-]+)\s*\}\}\}|\{\{\s*([A-Za-z0-9_.$-]+)\s*\}\}/g;

/** The value at a dotted path (`state.charge`, `run.id`, `totals.failed`), or undefined. */
export function lookup(ctx: unknown, path: string): unknown {
  let cur: unknown = ctx;
  for (const key of path.split('.')) {
    if (cur === null || cur === undefined || typeof cur !== 'object') return undefined;
    if (!Object.prototype.hasOwnProperty.call(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

export function valueText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? String(Math.round(v * 100) / 100) : '';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

export function render(template: string, ctx: unknown, escape: Escaper = plain): string {
  return template.replace(TAG, (_m, raw: string | undefined, esc: string | undefined) => {
    const text = valueText(lookup(ctx, (raw ?? esc) as string));
    return raw !== undefined ? text : escape(text);
  });
}

/** The placeholders a template uses, for validation in the dialog and tests. */
export function placeholders(template: string): string[] {
  return [...template.matchAll(TAG)].map((m) => (m[1] ?? m[2]) as string);
}

export const plain: Escaper = (s) => s;

export const html: Escaper = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Discord / CommonMark: backslash the characters that would format or mention. */
export const markdown: Escaper = (s) => s.replace(/([\\`*_~|>#[\]()-])/g, '\\$1').replace(/@/g, '@\u200b');

/** Inside a JSON string literal (the template supplies the quotes). */
export const jsonString: Escaper = (s) => JSON.stringify(s).slice(1, -1);

/** One header or subject line: no line breaks (header injection), no control characters. */
export const oneLine: Escaper = (s) => s.replace(/[\r\n\t]+/g, ' ').replace(/[\u0000-\u001f\u007f]/g, '');
