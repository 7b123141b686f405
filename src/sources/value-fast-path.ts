import type { Decoded, ReadingCandidate } from '../model/reading.js';

/**
 * The payload most sensors send, `{"value":21.5,"ts":1764758400123}` or a list of such objects,
 * read straight from the message's bytes: no string of the whole payload, no JSON.parse, whose
 * fixed cost for a 40-byte payload is ~600 ns (bench:e2e --profile, one reading per message).
 *
 * Only what it is sure of: objects whose keys are `value` and `ts` (each at most once, `ts`
 * optional), both JSON numbers, JSON whitespace between tokens, and a list of 1 to `maxMetrics` of
 * them. Anything else (another key, a string, an escape, a duplicate key, a number JSON would not
 * take) returns null and goes to the general decoder, so every answer is the one JSON.parse and
 * `valueObject` would give: a number is text that JSON's grammar accepts, rounded as JSON.parse
 * rounds it (see `number()`).
 */
export function decodeValueFast(
  bytes: Uint8Array,
  ctx: { device?: string | undefined; metric?: string | undefined; maxMetrics: number },
): Decoded | null {
  const s = new Scanner(bytes);
  s.space();
  const list = s.peek() === LBRACKET;
  if (list) {
    s.pos++;
    s.space();
  }
  const candidates: ReadingCandidate[] = [];
  for (;;) {
    if (candidates.length >= ctx.maxMetrics) return null;
    const item = s.object();
    if (item === null) return null;
    candidates.push({
      device: ctx.device,
      metric: ctx.metric,
      value: item.value,
      ts: item.ts,
      unit: undefined,
      tags: undefined,
    });
    s.space();
    if (!list) break;
    const c = s.next();
    if (c === RBRACKET) break;
    if (c !== COMMA) return null;
    s.space();
  }
  s.space();
  return s.pos === bytes.length ? { candidates, rejections: [] } : null;
}

const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;
const QUOTE = 0x22;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const VALUE = [0x76, 0x61, 0x6c, 0x75, 0x65]; // value
const TS = [0x74, 0x73]; // ts

class Scanner {
  pos = 0;

  constructor(private readonly b: Uint8Array) {}

  peek(): number {
    return this.pos < this.b.length ? (this.b[this.pos] as number) : -1;
  }

  next(): number {
    return this.pos < this.b.length ? (this.b[this.pos++] as number) : -1;
  }

  /** JSON's whitespace: space, tab, line feed, carriage return. */
  space(): void {
    const b = this.b;
    while (this.pos < b.length) {
      const c = b[this.pos] as number;
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.pos++;
    }
  }

  /** `{"value": n, "ts": n}` in either order, `ts` optional; null for anything else. */
  object(): { value: number; ts: number | undefined } | null {
    if (this.next() !== LBRACE) return null;
    let value: number | undefined;
    let ts: number | undefined;
    this.space();
    if (this.peek() === RBRACE) return null;
    for (;;) {
      const key = this.key();
      if (key === null) return null;
      this.space();
      if (this.next() !== COLON) return null;
      this.space();
      const n = this.number();
      if (n === null) return null;
      if (key === 'value') {
        if (value !== undefined) return null;
        value = n;
      } else {
        if (ts !== undefined) return null;
        ts = n;
      }
      this.space();
      const c = this.next();
      if (c === RBRACE) break;
      if (c !== COMMA) return null;
      this.space();
    }
    return value === undefined ? null : { value, ts };
  }

  private key(): 'value' | 'ts' | null {
    if (this.next() !== QUOTE) return null;
    const key = this.word(VALUE) ? 'value' : this.word(TS) ? 'ts' : null;
    return key !== null && this.next() === QUOTE ? key : null;
  }

  private word(w: readonly number[]): boolean {
    const b = this.b;
    if (this.pos + w.length > b.length) return false;
    for (let i = 0; i < w.length; i++) if (b[this.pos + i] !== w[i]) return false;
    this.pos += w.length;
    return true;
  }

  /**
   * A JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. Up to 15 digits and a power of
   * ten up to 22 are computed here (Clinger's fast path: the digits and the power are both exact
   * doubles, so one multiplication or division rounds correctly, as strtod and JSON.parse do);
   * anything longer goes to Number().
   */
  private number(): number | null {
    const b = this.b;
    const start = this.pos;
    const negative = this.peek() === MINUS;
    if (negative) this.pos++;
    const first = this.peek();
    let m = 0;
    if (first === ZERO) this.pos++;
    else if (first > ZERO && first <= NINE) m = this.accumulate(0);
    else return null;
    let digits = this.pos - (negative ? start + 1 : start);
    let power = 0;
    if (this.peek() === DOT) {
      const from = ++this.pos;
      m = this.accumulate(m);
      if (this.pos === from) return null;
      digits += this.pos - from;
      power = from - this.pos;
    }
    const e = this.peek();
    if (e === 0x65 || e === 0x45) {
      this.pos++;
      const sign = this.peek();
      if (sign === PLUS || sign === MINUS) this.pos++;
      const from = this.pos;
      // A huge exponent reaches Infinity here, out of the fast path's range: Number() reads it.
      const exponent = this.accumulate(0);
      if (this.pos === from) return null;
      power += sign === MINUS ? -exponent : exponent;
    }
    if (digits <= 15 && power >= -22 && power <= 22) {
      const v = power >= 0 ? m * (POW10[power] as number) : m / (POW10[-power] as number);
      return negative ? -v : v;
    }
    let text = '';
    for (let i = start; i < this.pos; i++) text += String.fromCharCode(b[i] as number);
    return Number(text);
  }

  /** The digits from here on, appended to `m` (m × 10^n + their value); none leaves `pos` as it was. */
  private accumulate(m: number): number {
    const b = this.b;
    for (; this.pos < b.length; this.pos++) {
      const c = b[this.pos] as number;
      if (c < ZERO || c > NINE) break;
      m = m * 10 + (c - ZERO);
    }
    return m;
  }
}

/** 10^0 … 10^22: every one an exact double. */
const POW10 = Array.from({ length: 23 }, (_, i) => Number(`1e${i}`));
