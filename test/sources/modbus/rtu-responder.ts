import { SerialPort } from 'serialport';

/** CRC-16/MODBUS. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

export interface RtuLogEntry {
  unit: number;
  fc: number;
  address: number;
  count: number;
  receivedAt: number;
  respondedAt: number | null;
}

/**
 * A Modbus RTU server on one end of a pty pair, answering read holding/input registers (FC 3, 4)
 * from a register table per unit id. It records every request frame and notes any frame that
 * arrives before the previous one was answered (an overlap: two requests on the bus at once).
 */
export class RtuResponder {
  /** unit → address → word (holding and input share it: the test does not care). */
  readonly registers = new Map<number, Map<number, number>>();
  readonly log: RtuLogEntry[] = [];
  overlaps = 0;
  /** Units that answer with a corrupted CRC. */
  readonly corrupt = new Set<number>();
  private port: SerialPort | null = null;
  private buffer = Buffer.alloc(0);
  private pending: RtuLogEntry | null = null;

  constructor(
    readonly path: string,
    /** How long the "device" takes to answer. */
    readonly latencyMs = 5,
  ) {}

  set(unit: number, address: number, words: number[]): void {
    let table = this.registers.get(unit);
    if (!table) {
      table = new Map();
      this.registers.set(unit, table);
    }
    for (const [i, w] of words.entries()) table.set(address + i, w);
  }

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const port = new SerialPort({ path: this.path, baudRate: 9600, autoOpen: false });
      port.on('data', (chunk: Buffer) => this.receive(chunk));
      port.on('error', () => {});
      port.open((err) => {
        if (err) reject(err);
        else {
          this.port = port;
          resolve();
        }
      });
    });
  }

  close(): Promise<void> {
    const port = this.port;
    this.port = null;
    if (!port?.isOpen) return Promise.resolve();
    return new Promise((resolve) => port.close(() => resolve()));
  }

  private receive(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    // Requests for FC 3/4 are 8 bytes; resynchronise on a bad CRC by dropping a byte.
    while (this.buffer.length >= 8) {
      const frame = this.buffer.subarray(0, 8);
      if (crc16(frame.subarray(0, 6)) !== frame.readUInt16LE(6)) {
        this.buffer = this.buffer.subarray(1);
        continue;
      }
      this.buffer = this.buffer.subarray(8);
      this.request(Buffer.from(frame));
    }
  }

  private request(frame: Buffer): void {
    const entry: RtuLogEntry = {
      unit: frame[0] as number,
      fc: frame[1] as number,
      address: frame.readUInt16BE(2),
      count: frame.readUInt16BE(4),
      receivedAt: performance.now(),
      respondedAt: null,
    };
    if (this.pending) this.overlaps++;
    this.log.push(entry);
    const table = this.registers.get(entry.unit);
    // A unit that is not on the bus stays silent, as on a real bus.
    if (!table || (entry.fc !== 3 && entry.fc !== 4)) return;
    this.pending = entry;
    setTimeout(() => {
      const body = Buffer.alloc(3 + entry.count * 2);
      body[0] = entry.unit;
      body[1] = entry.fc;
      body[2] = entry.count * 2;
      for (let i = 0; i < entry.count; i++) body.writeUInt16BE(table.get(entry.address + i) ?? 0, 3 + i * 2);
      const crc = Buffer.alloc(2);
      crc.writeUInt16LE(crc16(body) ^ (this.corrupt.has(entry.unit) ? 0x5555 : 0));
      const port = this.port;
      if (!port) return;
      port.write(Buffer.concat([body, crc]), () => {
        port.drain(() => {
          entry.respondedAt = performance.now();
          if (this.pending === entry) this.pending = null;
        });
      });
    }, this.latencyMs);
  }
}
