import type { EventEmitter } from 'node:events';
import ModbusSerial from 'modbus-serial';
import type { Clock, TimerHandle } from '../../runtime/clock.js';
import { deadline } from '../../runtime/deadline.js';
import type { ModbusConnection } from './config.js';
import type { Table } from './profile.js';
import { SerialQueue } from './queue.js';
import { RequestTimeoutError } from './waitress.js';

// modbus-serial is CommonJS: its class is the module itself, typed as its `default`.
const ModbusRTU = ModbusSerial.default;
type Client = InstanceType<typeof ModbusRTU>;

/** The bus is not connected (never was, dropped, or stopped): the request was not sent. */
export class LinkDownError extends Error {
  readonly code = 'ELINKDOWN';
  constructor(message: string) {
    super(message);
    this.name = 'LinkDownError';
  }
}

export interface ReadCommand {
  unitId: number;
  table: Table;
  address: number;
  /** Registers, or bits for coil and discrete. */
  count: number;
  timeout: number;
}

export interface BusOptions {
  clock: Clock;
  /** Quiet time between a response and the next request. */
  interFrameGap: number;
  /** How long opening the connection may take. */
  connectTimeout: number;
  /** Reconnect backoff: first delay, doubling up to `max`. */
  reconnect: { min: number; max: number };
  /** Told when the link comes up (error null) or goes down or fails to come up (error set). */
  onLink?: (up: boolean, error: string | null) => void;
}

/** Where a bus is: `tcp:host:port` or `rtu:/dev/ttyUSB0`. */
export function busKey(c: ModbusConnection): string {
  return c.kind === 'tcp' ? `tcp:${c.host}:${c.port}` : `rtu:${c.path}`;
}

/**
 * One Modbus bus (a TCP connection or a serial port) and its one queue: requests of every device
 * on it go out one at a time, with the inter-frame gap between them, each bounded by its timeout.
 * A dropped link fails the request in flight at once, and the bus reconnects with backoff by
 * creating a new modbus-serial client (a closed one is not reliably reusable). While the link is
 * down, requests fail fast instead of queueing.
 */
export class ModbusBus {
  private readonly queue: SerialQueue;
  private client: Client | null = null;
  /** Aborted when the current link drops: fails the request in flight. */
  private link: AbortController | null = null;
  private state: 'idle' | 'connecting' | 'up' | 'down' | 'stopped' = 'idle';
  private attempts = 0;
  private retryTimer: TimerHandle | null = null;
  private lastError: string | null = null;

  constructor(
    readonly connection: ModbusConnection,
    private readonly options: BusOptions,
    private readonly createClient: () => Client = () => new ModbusRTU(),
  ) {
    this.queue = new SerialQueue(options.clock, options.interFrameGap);
  }

  get key(): string {
    return busKey(this.connection);
  }

  private get stopped(): boolean {
    return this.state === 'stopped';
  }

  get up(): boolean {
    return this.state === 'up';
  }

  /** Starts connecting (in the background; the outcome goes to `onLink`). */
  start(): void {
    if (this.state !== 'idle') return;
    void this.connect();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.state = 'stopped';
    this.retryTimer?.cancel();
    this.retryTimer = null;
    const stopped = new LinkDownError('the source is stopping');
    this.queue.clear(stopped);
    this.link?.abort(stopped);
    this.link = null;
    this.client = null;
    if (client) await closeClient(client);
  }

  /** Reads registers (numbers) or bits (booleans), after the requests queued before it. */
  read(command: ReadCommand): Promise<number[] | boolean[]> {
    if (this.state !== 'up') return Promise.reject(this.downError());
    return this.queue.push(() => this.execute(command));
  }

  private downError(): LinkDownError {
    if (this.state === 'stopped') return new LinkDownError('the source is stopping');
    return new LinkDownError(`${this.key} is not connected${this.lastError ? ` (${this.lastError})` : ''}`);
  }

  private async execute(c: ReadCommand): Promise<number[] | boolean[]> {
    const client = this.client;
    const link = this.link;
    if (this.state !== 'up' || !client || !link) throw this.downError();
    if (!client.isOpen) {
      this.dropped(client, 'the link closed');
      throw this.downError();
    }
    client.setID(c.unitId);
    // modbus-serial's own timer only cleans up its transaction; ours decides.
    client.setTimeout(c.timeout * 2 + 100);
    const what = `unit ${c.unitId} ${c.table} ${c.address}+${c.count}`;
    const work =
      c.table === 'holding'
        ? client.readHoldingRegisters(c.address, c.count)
        : c.table === 'input'
          ? client.readInputRegisters(c.address, c.count)
          : c.table === 'coil'
            ? client.readCoils(c.address, c.count)
            : client.readDiscreteInputs(c.address, c.count);
    try {
      const result = await deadline<{ data: number[] | boolean[] }>(work, c.timeout, {
        clock: this.options.clock,
        signal: link.signal,
        onTimeout: () => new RequestTimeoutError(what, c.timeout),
      });
      // Bits come padded to whole bytes.
      return result.data.length > c.count ? result.data.slice(0, c.count) : result.data;
    } catch (err) {
      // modbus-serial says "Port Not Open" when the socket died without a close event.
      if ((err as Error)?.message === 'Port Not Open' || !client.isOpen) {
        this.dropped(client, 'the link closed');
        throw this.downError();
      }
      throw err;
    }
  }

  private async connect(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'connecting';
    this.retryTimer = null;
    const client = this.createClient();
    // An unhandled 'error' event would crash the process; errors surface through requests and close.
    client.on('error', (err: unknown) => {
      if (this.client === client) this.dropped(client, errorText(err));
    });
    const c = this.connection;
    try {
      const opening =
        c.kind === 'tcp'
          ? client.connectTCP(c.host, { port: c.port })
          : client.connectRTUBuffered(c.path, {
              baudRate: c.baudRate,
              parity: c.parity,
              dataBits: c.dataBits,
              stopBits: c.stopBits,
            });
      const ms = this.options.connectTimeout;
      await deadline(opening, ms, {
        clock: this.options.clock,
        onTimeout: () => new RequestTimeoutError(`connect ${this.key}`, ms),
      });
    } catch (err) {
      void closeClient(client);
      if (this.stopped) return;
      this.state = 'down';
      this.lastError = errorText(err);
      this.options.onLink?.(false, this.lastError);
      this.scheduleReconnect();
      return;
    }
    if ((this.state as string) !== 'connecting') {
      void closeClient(client);
      return;
    }
    this.client = client;
    this.link = new AbortController();
    this.state = 'up';
    this.attempts = 0;
    this.lastError = null;
    client.on('close', () => this.dropped(client, 'the link closed'));
    this.options.onLink?.(true, null);
  }

  private dropped(client: Client, reason: string): void {
    if (client !== this.client || this.state !== 'up') return;
    this.state = 'down';
    this.lastError = reason;
    this.client = null;
    this.link?.abort(new LinkDownError(`${this.key}: ${reason}`));
    this.link = null;
    void closeClient(client);
    this.options.onLink?.(false, reason);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.state === 'stopped') return;
    const { min, max } = this.options.reconnect;
    const delay = Math.min(max, min * 2 ** Math.min(this.attempts, 20));
    this.attempts++;
    this.retryTimer = this.options.clock.setTimeout(() => void this.connect(), delay);
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null && 'message' in err) return String(err.message);
  return String(err);
}

/** Closes a client whatever its state; never throws. */
function closeClient(client: Client): Promise<void> {
  return new Promise((resolve) => {
    const done = () => resolve();
    try {
      (client as unknown as EventEmitter).removeAllListeners('close');
      // A TCP port has destroy(); a serial port needs close() to release the device.
      if (client.isOpen) client.close(done);
      else client.destroy(done);
    } catch {
      resolve();
    }
    // Some ports never call back on an already closed link.
    setTimeout(done, 200).unref();
  });
}
