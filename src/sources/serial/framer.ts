/**
 * Cuts a serial byte stream into lines. Lines longer than `maxLineLength` bytes are not buffered:
 * their bytes are dropped up to the next delimiter, where framing resynchronises, and reported
 * as one `overflow`. Memory stays bounded by `maxLineLength` whatever the port sends.
 */
export type Frame = { kind: 'line'; bytes: Buffer } | { kind: 'overflow'; length: number };

export class LineFramer {
  private readonly delimiter: Buffer;
  /** Bytes after the last delimiter: the start of the next line. */
  private rest: Buffer = Buffer.alloc(0);
  /** In an overlong line: bytes dropped so far, or -1 when not discarding. */
  private dropped = -1;

  constructor(
    delimiter: string,
    private readonly maxLineLength: number,
  ) {
    this.delimiter = Buffer.from(delimiter, 'latin1');
    if (this.delimiter.length === 0) throw new Error('the delimiter is empty');
  }

  /** Feeds a chunk; `emit` gets every complete line (without its delimiter) and every overflow. */
  push(chunk: Buffer, emit: (frame: Frame) => void): void {
    const buf = this.rest.length > 0 ? Buffer.concat([this.rest, chunk]) : chunk;
    const step = this.delimiter.length;
    let start = 0;
    for (;;) {
      const end = buf.indexOf(this.delimiter, start);
      if (end < 0) break;
      const length = end - start;
      if (this.dropped >= 0) {
        emit({ kind: 'overflow', length: this.dropped + length });
        this.dropped = -1;
      } else if (length > this.maxLineLength) {
        emit({ kind: 'overflow', length });
      } else {
        emit({ kind: 'line', bytes: buf.subarray(start, end) });
      }
      start = end + step;
    }
    // Keep what could still be the start of a split delimiter; past the limit, drop the rest.
    const keep = step - 1;
    let tail = buf.length - start;
    if (this.dropped < 0 && tail > this.maxLineLength + keep) this.dropped = 0;
    if (this.dropped >= 0 && tail > keep) {
      this.dropped += tail - keep;
      start = buf.length - keep;
      tail = keep;
    }
    // A copy, so the retained bytes don't pin the whole chunk.
    this.rest = tail > 0 ? Buffer.from(buf.subarray(start)) : Buffer.alloc(0);
  }

  /** The bytes of an unfinished line (for a port that closed mid-line); forgets them. */
  reset(): number {
    const pending = this.dropped >= 0 ? this.dropped + this.rest.length : this.rest.length;
    this.rest = Buffer.alloc(0);
    this.dropped = -1;
    return pending;
  }
}
