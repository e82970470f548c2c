/**
 * The request side of the NUT network protocol as upsd 2.8.0 reads it: a byte stream fed through
 * NUT's "parseconf" state machine (common/parseconf.c), one command per logical line.
 *
 * What that means, all checked against the real upsd 2.8.0:
 * - Words are split by spaces, tabs and CR; `"…"` groups a word, `\x` takes x literally (inside
 *   and outside quotes); `"a"b` is two words; `a"b` is one word with a quote in it.
 * - `#` outside quotes starts a comment to the end of the line, also in the middle of a word.
 * - `=` is always a word of its own (`VER=` is VER plus one argument).
 * - Bytes below 0x20 (other than the separators) and above 0x7f are dropped: only ASCII survives.
 * - A line break inside quotes, or after a backslash, does not end the command.
 * - A word keeps at most 512 characters and a command at most 32 words; the rest is dropped.
 * Deliberate difference: upsd 2.8.0 stops answering a connection that sends `#` inside quotes
 * (the line never completes); here `#` inside quotes is an ordinary character, as parseconf documents.
 * Unlike upsd, a command is bounded in bytes (default 8 KiB): a longer one is a protocol violation
 * and the caller closes that connection.
 */

import { quote } from '../nut/protocol';

const FIND_WORD_START = 1;
const FIND_EOL = 2;
const QUOTE_COLLECT = 3;
const QC_LITERAL = 4;
const COLLECT = 5;
const COLLECT_LITERAL = 6;

/** parseconf's defaults (PCONF_DEFAULT_ARG_LIMIT, PCONF_DEFAULT_WORDLEN_LIMIT). */
export const MAX_ARGS = 32;
export const MAX_WORD_LENGTH = 512;
/** Default bound for one command in bytes. */
export const MAX_COMMAND_BYTES = 8192;

const LF = 0x0a;
const HASH = 0x23;
const BACKSLASH = 0x5c;
const QUOTE = 0x22;
const EQUALS = 0x3d;

/** C isspace() in the "C" locale: space, \t, \n, \v, \f, \r. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

export class CommandTooLong extends Error {
  constructor(readonly limit: number) {
    super(`command longer than ${limit} bytes`);
    this.name = 'CommandTooLong';
  }
}

export class CommandParser {
  private state = FIND_WORD_START;
  private word = '';
  private args: string[] = [];
  /** Bytes of the command being read (since the last one ended). */
  private bytes = 0;

  constructor(private readonly maxCommandBytes = MAX_COMMAND_BYTES) {}

  /**
   * Feed bytes; returns every command they complete, as its words (possibly none: an empty line).
   * Throws CommandTooLong when a command grows past the limit; the parser is then unusable.
   */
  push(chunk: Buffer): string[][] {
    const out: string[][] = [];
    for (let i = 0; i < chunk.length; i++) {
      if (++this.bytes > this.maxCommandBytes) throw new CommandTooLong(this.maxCommandBytes);
      if (this.step(chunk[i])) {
        out.push(this.args);
        this.args = [];
        this.bytes = 0;
      }
    }
    return out;
  }

  /** True while part of a command has been read. */
  get pending(): boolean {
    return this.bytes > 0;
  }

  private addChar(c: number): void {
    if (c < 0x20 || c > 0x7f) return;
    if (this.word.length >= MAX_WORD_LENGTH) return;
    this.word += String.fromCharCode(c);
  }

  private endOfWord(): void {
    if (this.args.length < MAX_ARGS) this.args.push(this.word);
    this.word = '';
  }

  /** One byte through the state machine; true when it ends a command. */
  private step(c: number): boolean {
    switch (this.state) {
      case FIND_WORD_START:
        return this.findWordStart(c);
      case FIND_EOL:
        if (c === LF) return this.endOfLine();
        return false;
      case QUOTE_COLLECT:
        if (c === QUOTE) {
          this.endOfWord();
          this.state = FIND_WORD_START;
        } else if (c === BACKSLASH) {
          this.state = QC_LITERAL;
        } else {
          this.addChar(c);
        }
        return false;
      case QC_LITERAL:
        if (c !== LF) this.addChar(c);
        this.state = QUOTE_COLLECT;
        return false;
      case COLLECT:
        if (c === HASH) {
          this.endOfWord();
          this.state = FIND_EOL;
          return false;
        }
        if (c === LF) {
          this.endOfWord();
          return this.endOfLine();
        }
        if (isSpace(c)) {
          this.endOfWord();
          this.state = FIND_WORD_START;
          return false;
        }
        if (c === EQUALS) {
          this.endOfWord();
          this.findWordStart(c);
          this.state = FIND_WORD_START;
          return false;
        }
        if (c === BACKSLASH) {
          this.state = COLLECT_LITERAL;
          return false;
        }
        this.addChar(c);
        return false;
      case COLLECT_LITERAL:
        if (c !== LF) this.addChar(c);
        this.state = COLLECT;
        return false;
      default:
        return false;
    }
  }

  private findWordStart(c: number): boolean {
    if (c === LF) return this.endOfLine();
    if (c === HASH) {
      this.state = FIND_EOL;
      return false;
    }
    if (isSpace(c)) {
      this.state = FIND_WORD_START;
      return false;
    }
    if (c === BACKSLASH) {
      this.state = COLLECT_LITERAL;
      return false;
    }
    if (c === QUOTE) {
      this.state = QUOTE_COLLECT;
      return false;
    }
    this.addChar(c);
    if (c === EQUALS) {
      this.endOfWord();
      this.state = FIND_WORD_START;
      return false;
    }
    this.state = COLLECT;
    return false;
  }

  private endOfLine(): boolean {
    this.state = FIND_WORD_START;
    return true;
  }
}

/**
 * A value as upsd sends it: in quotes, with `"`, `\` and `#` escaped (pconf_encode). Control
 * characters would break the line framing, so they are dropped.
 */
export function quoteValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  return quote(value.replace(/[\x00-\x1f]/g, ''));
}
