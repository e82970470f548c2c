/**
 * MQTT topic helpers: wildcard matching for routing incoming messages to subscribers, and the slug
 * every topic level and discovery id is built from (Home Assistant accepts only `[a-zA-Z0-9_-]` in
 * discovery node and object ids).
 */

/** Does `topic` match the subscription `filter` (`+` one level, `#` the rest)? */
export function topicMatches(filter: string, topic: string): boolean {
  if (filter === topic) return true;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return i < t.length || (i === t.length && i > 0);
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** `My UPS (rack)` → `my_ups_rack`: lower case, `[a-z0-9_]`, no leading/trailing/double `_`. */
export function slug(s: string): string {
  const out = s
    .replace(/ß/g, 'ss')
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  return out || 'x';
}

/** A base topic as the user typed it, without leading/trailing slashes; throws on wildcards. */
export function cleanBaseTopic(t: string): string {
  const v = t.trim().replace(/^\/+|\/+$/g, '');
  if (!v) throw new Error('the base topic must not be empty');
  if (/[+#\u0000]/.test(v)) throw new Error('the base topic must not contain + or #');
  return v;
}
