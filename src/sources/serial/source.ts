import { TextDecoder } from 'node:util';
import { SerialPort } from 'serialport';
import type { Ingest } from '../../ingest/ingest.js';
import { ReadingRejection } from '../../model/reading.js';
import type { Clock, TimerHandle } from '../../runtime/clock.js';
import type { Logger } from '../../runtime/log.js';
import type { Metrics } from '../../runtime/metrics.js';
import { type Source, SourceStats, type SourceStatus } from '../source.js';
import type { SerialSourceConfig } from './config.js';
import { type Frame, LineFramer } from './framer.js';
import { reportHangups } from './hangup.js';
import { createLineParser, type LineParser } from './parse.js';

export interface SerialSourceDeps {
  ingest: Ingest;
  clock: Clock;
  metrics: Metrics;
  log: Logger;
  /** ingest.maxMetricsPerMessage: more readings in one line reject it whole. Default 256. */
  maxMetricsPerMessage?: number;
}

type ErrorKind = 'open' | 'io' | 'parse';

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A line-oriented sensor on a serial port (SPEC §3). Lines are framed by the delimiter (bounded
 * by maxLineLength), decoded, parsed by the configured format and handed to Ingest one reading at
 * a time. Garbage is rejected and counted and the stream goes on. When the port goes away (an
 * unplugged USB adapter, a read error, end of stream) the source is `offline` and reopens the
 * port with exponential backoff until it is back; a failed first open does not fail `start()`,
 * so a gateway starts with a sensor unplugged.
 */
export class SerialSource implements Source {
  readonly type = 'serial';
  private readonly stats: SourceStats;
  private port: SerialPort | null = null;
  private framer: LineFramer | null = null;
  private parse: LineParser | null = null;
  private decoder: TextDecoder | null = null;
  private reopenTimer: TimerHandle | null = null;
  /** Failed opens since the last good one: the backoff exponent. */
  private attempts = 0;
  private running = false;
  /** The port is being closed after an error that was already counted. */
  private failing = false;

  constructor(
    private readonly config: SerialSourceConfig,
    private readonly deps: SerialSourceDeps,
  ) {
    this.stats = new SourceStats(config.id, 'serial');
  }

  get id(): string {
    return this.config.id;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const c = this.config;
    this.running = true;
    this.attempts = 0;
    this.framer = new LineFramer(c.delimiter, c.maxLineLength);
    this.parse = createLineParser(c, { maxMetrics: this.deps.maxMetricsPerMessage ?? 256 });
    // fatal: a line with bytes that are not UTF-8 is rejected instead of stored with U+FFFD in it.
    this.decoder = c.encoding === 'utf8' ? new TextDecoder('utf-8', { fatal: true }) : null;
    this.stats.state = 'starting';
    this.setUp(false);
    await this.open();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.reopenTimer?.cancel();
    this.reopenTimer = null;
    const port = this.port;
    this.port = null;
    this.framer?.reset();
    this.stats.state = 'stopped';
    this.setUp(false);
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  status(): SourceStatus {
    return this.stats.snapshot();
  }

  /** One attempt to open the port; resolves when it is open or has failed (and a retry is set). */
  private open(): Promise<void> {
    const c = this.config;
    return new Promise<void>((resolve) => {
      let port: SerialPort;
      try {
        port = new SerialPort({
          path: c.path,
          baudRate: c.baudRate,
          dataBits: c.dataBits,
          parity: c.parity,
          stopBits: c.stopBits,
          autoOpen: false,
        });
      } catch (err) {
        this.openFailed(err);
        resolve();
        return;
      }
      this.port = port;
      // Listeners before open: an 'error' event without one would crash the process.
      port.on('error', (err: Error) => this.portFailed(port, err));
      port.on('close', (err: Error | null) => this.portClosed(port, err));
      // Zero bytes read (end of file) leaves serialport's stream ended but "open": treat as a drop.
      port.on('end', () => this.portFailed(port, new Error('end of stream')));
      port.open((err) => {
        if (err) {
          if (this.port === port) this.port = null;
          this.openFailed(err);
        } else if (this.port !== port || !this.running) {
          port.close(() => {});
        } else {
          // Before the first read, which the 'data' listener starts.
          reportHangups(port.port);
          port.on('data', (chunk: Buffer) => this.onData(port, chunk));
          this.opened();
        }
        resolve();
      });
    });
  }

  private opened(): void {
    const wasOffline = this.stats.state === 'offline';
    this.attempts = 0;
    this.stats.state = 'connected';
    this.setUp(true);
    this.deps.log.info(
      { source: this.config.id, path: this.config.path },
      wasOffline ? 'serial: port reopened' : 'serial: port open',
    );
  }

  private openFailed(err: unknown): void {
    if (!this.running) return;
    const message = `cannot open ${this.config.path}: ${errorText(err)}`;
    const first = this.stats.state !== 'offline' || this.attempts === 0;
    this.error('open', message);
    this.stats.state = 'offline';
    this.setUp(false);
    // The first failure is news; the retries of an unplugged port are not.
    if (first) this.deps.log.warn({ source: this.config.id, path: this.config.path }, `serial: ${message}`);
    else this.deps.log.debug({ source: this.config.id, attempt: this.attempts }, `serial: ${message}`);
    this.scheduleReopen();
  }

  /** An error on the open port: count it and close the port; the close reopens. */
  private portFailed(port: SerialPort, err: Error): void {
    if (port !== this.port) return;
    this.error('io', `${this.config.path}: ${err.message}`);
    this.deps.log.warn({ source: this.config.id, path: this.config.path }, `serial: ${err.message}`);
    this.failing = true;
    // A close that fails leaves no 'close' event: drop the port all the same.
    if (port.isOpen) port.close((e) => e && this.portClosed(port, null));
    else this.portClosed(port, null);
  }

  private portClosed(port: SerialPort, err: Error | null): void {
    if (port !== this.port) return;
    this.port = null;
    port.removeAllListeners('data');
    if (!this.running) return;
    const partial = this.framer?.reset() ?? 0;
    if (partial > 0)
      this.rejectLine(
        `a partial line of ${partial} bytes: the port closed before its end`,
        'malformed_payload',
      );
    if (err) this.error('io', `${this.config.path}: ${err.message}`);
    else if (!this.failing) this.error('io', `${this.config.path}: the port closed`);
    this.failing = false;
    this.stats.state = 'offline';
    this.setUp(false);
    this.deps.log.warn(
      { source: this.config.id, path: this.config.path },
      `serial: port closed${err ? ` (${err.message})` : ''}; reopening`,
    );
    this.attempts = 0;
    this.scheduleReopen();
  }

  private scheduleReopen(): void {
    if (!this.running || this.reopenTimer) return;
    const { min, max } = this.config.reopen;
    const delay = Math.min(max, min * 2 ** Math.min(this.attempts, 30));
    this.attempts++;
    this.reopenTimer = this.deps.clock.setTimeout(() => {
      this.reopenTimer = null;
      if (this.running && !this.port) void this.open();
    }, delay);
  }

  private onData(port: SerialPort, chunk: Buffer): void {
    if (port !== this.port || !this.framer) return;
    try {
      this.framer.push(chunk, (frame) => this.onFrame(frame));
    } catch (err) {
      // Nothing below should throw; if it does, the line is lost, not the gateway.
      this.error('parse', `line handling failed: ${errorText(err)}`);
      this.deps.log.error({ source: this.config.id, err }, 'serial: line handling failed');
    }
  }

  private onFrame(frame: Frame): void {
    if (frame.kind === 'overflow') {
      this.rejectLine(
        `a line of ${frame.length} bytes is longer than maxLineLength (${this.config.maxLineLength}); skipped to the next delimiter`,
        'oversized',
      );
      return;
    }
    const text = this.decode(frame.bytes);
    if (text === null) {
      this.rejectLine(
        `a line of ${frame.bytes.length} bytes is not valid UTF-8 (line noise or a wrong baud rate?)`,
      );
      return;
    }
    const decoded = this.parse!(text);
    const { ingest, clock } = this.deps;
    const id = this.config.id;
    for (const r of decoded.rejections) {
      this.error('parse', r.message);
      ingest.reject(id, r, this.config.path);
    }
    if (decoded.candidates.length === 0) return;
    const now = clock.now();
    let accepted = 0;
    for (const c of decoded.candidates)
      if (ingest.accept(id, c, now, this.config.path) === 'accepted') accepted++;
    this.stats.delivered(accepted, now);
  }

  private decode(bytes: Buffer): string | null {
    if (!this.decoder) return bytes.toString(this.config.encoding === 'ascii' ? 'ascii' : 'latin1');
    try {
      return this.decoder.decode(bytes);
    } catch {
      return null;
    }
  }

  private rejectLine(message: string, reason: 'malformed_payload' | 'oversized' = 'malformed_payload'): void {
    this.error('parse', message);
    this.deps.ingest.reject(this.config.id, new ReadingRejection(reason, message), this.config.path);
  }

  private error(kind: ErrorKind, message: string): void {
    this.stats.failed(message);
    this.deps.metrics.sourceErrors.inc({ source: this.config.id, kind });
  }

  private setUp(up: boolean): void {
    this.deps.metrics.sourceUp.set({ source: this.config.id, device: '' }, up ? 1 : 0);
  }
}
