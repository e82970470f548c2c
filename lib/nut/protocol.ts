/**
 * The NUT network protocol (upsd, protocol 1.3): tokenising, quoting, errors and line framing.
 * Pure functions and small classes, no I/O. See docs/net-protocol.txt of Network UPS Tools.
 */

/** Longest reply line we accept. upsd's own buffers are far smaller; anything longer is garbage. */
export const MAX_LINE_BYTES = 8192;

/** Most rows one LIST reply may have. A real UPS has a few hundred variables; more is a runaway peer. */
export const MAX_LIST_ROWS = 10_000;

/** Human explanations for every ERR code upsd can send (server/neterr.h). */
export const NUT_ERRORS: Readonly<Record<string, string>> = {
  'ACCESS-DENIED': 'access denied: the host or the username/password is not allowed to do this',
  'UNKNOWN-UPS': 'upsd has no UPS by that name',
  'VAR-NOT-SUPPORTED': 'the UPS does not support this variable',
  'CMD-NOT-SUPPORTED': 'the UPS does not support this command',
  'INVALID-ARGUMENT': 'invalid argument',
  'INSTCMD-FAILED': 'upsd could not hand the instant command to the driver',
  'SET-FAILED': 'upsd could not hand the new value to the driver',
  READONLY: 'the variable is read-only',
  'TOO-LONG': 'the value is too long',
  'INVALID-VALUE': 'the value is not allowed for this variable',
  'FEATURE-NOT-SUPPORTED': 'upsd does not support this feature (TLS not compiled in?)',
  'FEATURE-NOT-CONFIGURED': 'the feature is not configured on upsd (STARTTLS: upsd.conf needs CERTFILE, or CERTPATH and CERTIDENT on NSS builds)',
  'ALREADY-SSL-MODE': 'the connection is already in TLS mode',
  'DRIVER-NOT-CONNECTED': 'upsd has no connection to the UPS driver (driver not running?)',
  'DATA-STALE': 'the driver has lost contact with the UPS: data is stale',
  'ALREADY-LOGGED-IN': 'already logged in on this connection',
  'ALREADY-SET-PASSWORD': 'password already sent on this connection',
  'ALREADY-SET-USERNAME': 'username already sent on this connection',
  'INVALID-PASSWORD': 'invalid password',
  'INVALID-USERNAME': 'invalid username',
  'USERNAME-REQUIRED': 'a username is required for this command',
  'PASSWORD-REQUIRED': 'a password is required for this command',
  'UNKNOWN-COMMAND': 'upsd does not know this command',
  'VAR-UNKNOWN': 'unknown variable',
  'UNKNOWN-TYPE': 'unknown type',
  'UNKNOWN-INSTCMD': 'unknown instant command',
  'MISSING-ARGUMENT': 'missing argument',
};

/** An `ERR <CODE> [extra]` answer from upsd. */
export class NutError extends Error {
  readonly code: string;
  readonly extra: string;
  constructor(code: string, extra = '', context = '') {
    const text = NUT_ERRORS[code] ?? 'unrecognised error code';
    super(`${context ? context + ': ' : ''}${text} (ERR ${code}${extra ? ' ' + extra : ''})`);
    this.name = 'NutError';
    this.code = code;
    this.extra = extra;
  }
}

/** A reply that breaks the protocol: bad quoting, wrong framing, oversized line. */
export class NutProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NutProtocolError';
  }
}

/**
 * Split one protocol line into words. Double-quoted words may contain spaces; inside quotes a
 * backslash keeps the next character literally (upsd escapes `"`, `\` and `#`).
 */
export function tokenize(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  const n = line.length;
  while (i < n) {
    const c = line[i];
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    if (c === '"') {
      let word = '';
      i++;
      let closed = false;
      while (i < n) {
        const d = line[i];
        if (d === '\\') {
          if (i + 1 >= n) throw new NutProtocolError('line ends inside an escape');
          word += line[i + 1];
          i += 2;
        } else if (d === '"') {
          closed = true;
          i++;
          break;
        } else {
          word += d;
          i++;
        }
      }
      if (!closed) throw new NutProtocolError('unterminated quoted value');
      if (i < n && line[i] !== ' ' && line[i] !== '\t') throw new NutProtocolError('text directly after a closing quote');
      words.push(word);
      continue;
    }
    let start = i;
    while (i < n && line[i] !== ' ' && line[i] !== '\t') {
      if (line[i] === '"') throw new NutProtocolError('quote inside an unquoted word');
      i++;
    }
    words.push(line.slice(start, i));
  }
  return words;
}

/** Quote a value for sending (SET VAR, passwords with spaces). */
export function quote(value: string): string {
  return '"' + value.replace(/[\\"#]/g, (m) => '\\' + m) + '"';
}

/** A word we send unquoted (UPS names, variable names, commands): no spaces, quotes or controls. */
export function assertWord(word: string, what: string): string {
  if (!/^[A-Za-z0-9._:@+\-]+$/.test(word)) throw new NutProtocolError(`${what} "${word}" contains characters NUT does not allow`);
  return word;
}

/** If `line` is an ERR reply, the error; else undefined. */
export function parseErrorLine(line: string, context = ''): NutError | undefined {
  if (!line.startsWith('ERR')) return undefined;
  if (line.length > 3 && line[3] !== ' ') return undefined;
  const rest = line.slice(4).trim();
  const sp = rest.indexOf(' ');
  const code = sp < 0 ? rest : rest.slice(0, sp);
  const extra = sp < 0 ? '' : rest.slice(sp + 1).trim();
  return new NutError(code || 'UNKNOWN', extra, context);
}

/**
 * Turns a byte stream into lines ending in LF (a CR before it is dropped). Bounded: a line longer
 * than MAX_LINE_BYTES is a protocol error, and nothing of it is kept.
 */
export class LineSplitter {
  private buf = '';
  constructor(private readonly maxLine = MAX_LINE_BYTES) {}

  /** Feed a chunk; returns the complete lines it finished. Throws NutProtocolError on an oversized line. */
  push(chunk: string): string[] {
    this.buf += chunk;
    const lines: string[] = [];
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      let line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line.length > this.maxLine) {
        this.buf = '';
        throw new NutProtocolError(`reply line longer than ${this.maxLine} bytes`);
      }
      lines.push(line);
    }
    if (this.buf.length > this.maxLine) {
      this.buf = '';
      throw new NutProtocolError(`reply line longer than ${this.maxLine} bytes`);
    }
    return lines;
  }

  get pending(): number {
    return this.buf.length;
  }

  reset(): void {
    this.buf = '';
  }
}

/** One `BEGIN LIST <what...>` ... `END LIST <what...>` block, as words per line. */
export interface ListBlock {
  header: string[];
  rows: string[][];
}

/**
 * Parses the lines of a LIST reply. Strict: the first line must be `BEGIN LIST <args>` (or ERR),
 * every row must start with the expected row keyword, and `END LIST` must repeat the header.
 */
export class ListReader {
  private rows: string[][] = [];
  private begun = false;
  constructor(private readonly args: string[], private readonly rowWord: string, private readonly context: string) {}

  /** Returns the block when the END line arrives, undefined while more lines are needed. */
  accept(line: string): ListBlock | undefined {
    if (!this.begun) {
      const err = parseErrorLine(line, this.context);
      if (err) throw err;
      const words = tokenize(line);
      if (words[0] !== 'BEGIN' || words[1] !== 'LIST' || !sameWords(words.slice(2), this.args)) {
        throw new NutProtocolError(`expected "BEGIN LIST ${this.args.join(' ')}", got "${clip(line)}"`);
      }
      this.begun = true;
      return undefined;
    }
    const words = tokenize(line);
    if (words[0] === 'END') {
      // upsd sends `END LIST CMD <ups>` although the doc says `<cmdname>`; compare the list type only
      // for CMD, the full header otherwise.
      if (words[1] !== 'LIST' || words[2] !== this.args[0]) throw new NutProtocolError(`unexpected end of list "${clip(line)}"`);
      if (this.args[0] !== 'CMD' && !sameWords(words.slice(2), this.args)) throw new NutProtocolError(`end of list does not match its beginning: "${clip(line)}"`);
      return { header: this.args, rows: this.rows };
    }
    if (words[0] !== this.rowWord) {
      const err = parseErrorLine(line, this.context);
      if (err) throw err;
      throw new NutProtocolError(`unexpected line in LIST ${this.args[0]}: "${clip(line)}"`);
    }
    if (this.rows.length >= MAX_LIST_ROWS) throw new NutProtocolError(`LIST ${this.args[0]} reply has more than ${MAX_LIST_ROWS} rows`);
    this.rows.push(words);
    return undefined;
  }
}

function sameWords(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((w, i) => w === b[i]);
}

export function clip(s: string, n = 80): string {
  return s.length > n ? s.slice(0, n) + '…' : s;
}

/** Turn the rows of `LIST VAR <ups>` into a name → value map; rows must be `VAR <ups> <name> <value>`. */
export function varsFromList(block: ListBlock, ups: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const row of block.rows) {
    if (row.length !== 4 || row[1] !== ups) throw new NutProtocolError(`malformed VAR row: ${row.join(' ')}`);
    vars[row[2]] = row[3];
  }
  return vars;
}
