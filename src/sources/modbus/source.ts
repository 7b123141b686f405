import type { Ingest } from '../../ingest/ingest.js';
import type { Clock, TimerHandle } from '../../runtime/clock.js';
import { InternalErrors } from '../../runtime/internal-errors.js';
import type { Logger, RateLimitedLog } from '../../runtime/log.js';
import type { Metrics } from '../../runtime/metrics.js';
import { type DeviceStatus, type Source, SourceStats, type SourceStatus } from '../source.js';
import { LinkDownError, ModbusBus } from './bus.js';
import type { ModbusDeviceConfig, ModbusSourceConfig } from './config.js';
import { planReads, type ReadRequest } from './plan.js';
import { decodeBit, decodeRegister, isBitTable, type Profile } from './profile.js';
import { RequestTimeoutError } from './waitress.js';

export interface ModbusSourceDeps {
  ingest: Ingest;
  clock: Clock;
  metrics: Metrics;
  log: Logger;
  warn: RateLimitedLog;
  profiles: ReadonlyMap<string, Profile>;
}

/** How a request failed, for metrics (`outcome`, `kind`) and retry decisions. */
export type FailureKind = 'timeout' | 'exception' | 'crc' | 'link' | 'error';

/** A device's poll stops backing off at this many intervals. */
const MAX_BACKOFF_INTERVALS = 10;
/** Exception codes worth retrying at once: 5 acknowledge, 6 busy. Others answer the same again. */
const RETRYABLE_EXCEPTIONS = new Set([5, 6]);

const EXCEPTION_NAMES: Record<number, string> = {
  1: 'illegal function',
  2: 'illegal data address',
  3: 'illegal data value',
  4: 'server device failure',
  5: 'acknowledge',
  6: 'server device busy',
  8: 'memory parity error',
  10: 'gateway path unavailable',
  11: 'gateway target device failed to respond',
};

export function classify(err: unknown): { kind: FailureKind; code?: number; message: string } {
  const e = err as { message?: unknown; modbusCode?: unknown; errno?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (typeof e?.modbusCode === 'number') {
    const code = e.modbusCode;
    return { kind: 'exception', code, message: `exception ${code} (${EXCEPTION_NAMES[code] ?? 'unknown'})` };
  }
  if (err instanceof LinkDownError) return { kind: 'link', message };
  if (err instanceof RequestTimeoutError || e?.errno === 'ETIMEDOUT') return { kind: 'timeout', message };
  if (/CRC/i.test(message)) return { kind: 'crc', message: 'CRC error in the response' };
  return { kind: 'error', message };
}

interface DeviceState {
  config: ModbusDeviceConfig;
  requests: ReadRequest[];
  interval: number;
  timeout: number;
  retries: number;
  status: DeviceStatus;
  failures: number;
  timer: TimerHandle | null;
  readings: number;
  /** The last poll found the link down: poll again as soon as it is back. */
  waitingForLink: boolean;
}

/**
 * Polls the devices of one Modbus bus (SPEC §3): every device's profile is read with coalesced
 * requests through the bus's one queue, decoded and ingested. A failing device (timeout, exception
 * response, CRC error, dropped link) goes offline and backs off on its own; other devices keep
 * their schedule, and the bus reconnects by itself.
 */
export class ModbusSource implements Source {
  readonly type = 'modbus';
  private readonly stats: SourceStats;
  private bus: ModbusBus | null = null;
  private devices: DeviceState[] = [];
  private running = false;

  private readonly errors: InternalErrors;

  constructor(
    private readonly config: ModbusSourceConfig,
    private readonly deps: ModbusSourceDeps,
  ) {
    this.stats = new SourceStats(config.id, 'modbus');
    this.errors = new InternalErrors(deps.metrics, deps.warn);
  }

  get id(): string {
    return this.config.id;
  }

  async start(): Promise<void> {
    const c = this.config;
    this.devices = c.devices.map((d) => {
      const profile = this.deps.profiles.get(d.profile);
      if (!profile) throw new Error(`modbus source ${c.id}: device ${d.id}: unknown profile "${d.profile}"`);
      return {
        config: d,
        requests: planReads(profile.registers, { maxRegisters: c.maxRegisters, maxGap: c.maxGap }),
        interval: d.interval ?? c.interval,
        timeout: d.timeout ?? c.timeout,
        retries: d.retries ?? c.retries,
        status: { state: 'offline', lastReadingAt: null, errors: 0, lastError: null },
        failures: 0,
        timer: null,
        readings: 0,
        waitingForLink: false,
      };
    });
    this.bus = new ModbusBus(c.connection, {
      clock: this.deps.clock,
      interFrameGap: c.interFrameGap,
      connectTimeout: Math.max(c.timeout * 3, 3000),
      reconnect: { min: Math.min(500, c.interval), max: Math.max(c.interval, 5000) },
      onLink: (up, error) => this.onLink(up, error),
    });
    this.running = true;
    this.stats.state = 'starting';
    for (const d of this.devices) this.deps.metrics.sourceUp.set({ source: c.id, device: d.config.id }, 0);
    this.bus.start();
    // Spread the first polls a little so devices on one bus don't all queue at the same instant.
    this.devices.forEach((d, i) => {
      this.schedule(d, Math.min(50 * i, d.interval));
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const d of this.devices) {
      d.timer?.cancel();
      d.timer = null;
    }
    await this.bus?.stop();
    this.bus = null;
    this.stats.state = 'stopped';
  }

  status(): SourceStatus {
    const devices: Record<string, DeviceStatus> = {};
    for (const d of this.devices) devices[d.config.id] = { ...d.status };
    const snapshot = this.stats.snapshot();
    if (this.running) {
      const states = this.devices.map((d) => d.status.state);
      snapshot.state = states.includes('connected')
        ? 'connected'
        : this.devices.every((d) => d.status.errors === 0 && d.readings === 0)
          ? 'starting'
          : 'offline';
    }
    return { ...snapshot, devices };
  }

  private onLink(up: boolean, error: string | null): void {
    const source = this.config.id;
    if (up) {
      this.deps.log.info({ source, bus: this.bus?.key }, 'modbus: connected');
      // Devices that found the link down poll now rather than at the end of their backoff.
      let i = 0;
      for (const d of this.devices) {
        if (!d.waitingForLink || !d.timer) continue;
        d.waitingForLink = false;
        d.timer.cancel();
        this.schedule(d, Math.min(20 * i++, d.interval));
      }
      return;
    }
    this.deps.metrics.sourceErrors.inc({ source, kind: 'link' });
    this.stats.failed(`${this.bus?.key ?? 'bus'}: ${error ?? 'down'}`);
    this.deps.warn.warn(`modbus:${source}:link`, { source, bus: this.bus?.key, error }, 'modbus: link down');
  }

  private schedule(d: DeviceState, delay: number): void {
    if (!this.running) return;
    d.timer = this.deps.clock.setTimeout(() => {
      d.timer = null;
      this.poll(d).catch((err: unknown) => {
        // A bug below must not end this device's polling: counted, logged, tried again later.
        this.errors.report('modbus/poll', err);
        this.schedule(d, d.interval * MAX_BACKOFF_INTERVALS);
      });
    }, delay);
  }

  /** One poll of one device: its requests in order; the first that fails ends the poll. */
  private async poll(d: DeviceState): Promise<void> {
    const started = this.deps.clock.now();
    let failure: { kind: FailureKind; code?: number; message: string; request: ReadRequest } | null = null;
    for (const request of d.requests) {
      if (!this.running) return;
      const outcome = await this.readWithRetries(d, request);
      if (!this.running) return;
      if ('failure' in outcome) {
        failure = { ...outcome.failure, request };
        break;
      }
      this.deliver(d, request, outcome.data);
    }
    if (failure) this.deviceFailed(d, failure);
    else this.deviceOk(d);
    d.waitingForLink = failure?.kind === 'link';
    const next =
      failure === null
        ? Math.max(0, d.interval - (this.deps.clock.now() - started))
        : Math.min(d.interval * 2 ** Math.min(d.failures - 1, 10), d.interval * MAX_BACKOFF_INTERVALS);
    this.schedule(d, next);
  }

  private async readWithRetries(
    d: DeviceState,
    r: ReadRequest,
  ): Promise<{ data: number[] | boolean[] } | { failure: ReturnType<typeof classify> }> {
    const bus = this.bus;
    const source = this.config.id;
    let last: ReturnType<typeof classify> = { kind: 'link', message: 'not connected' };
    for (let attempt = 0; attempt <= d.retries; attempt++) {
      if (!bus || !this.running) return { failure: last };
      try {
        const data = await bus.read({
          unitId: d.config.unitId,
          table: r.table,
          address: r.address,
          count: r.count,
          timeout: d.timeout,
        });
        this.deps.metrics.modbusRequests.inc({ source, outcome: 'ok' });
        return { data };
      } catch (err) {
        last = classify(err);
        // A request that was never sent (link down) is not counted as a Modbus request.
        if (last.kind !== 'link') this.deps.metrics.modbusRequests.inc({ source, outcome: last.kind });
        const retry =
          last.kind === 'timeout' ||
          last.kind === 'crc' ||
          last.kind === 'error' ||
          (last.kind === 'exception' && RETRYABLE_EXCEPTIONS.has(last.code ?? 0));
        if (!retry) break;
      }
    }
    return { failure: last };
  }

  private deliver(d: DeviceState, r: ReadRequest, data: number[] | boolean[]): void {
    const now = this.deps.clock.now();
    const device = d.config.id;
    let accepted = 0;
    for (const { register, offset } of r.registers) {
      let value: number;
      try {
        value = isBitTable(register.table)
          ? decodeBit(register, data as boolean[], offset)
          : decodeRegister(register, data as number[], offset);
      } catch (err) {
        this.deps.warn.warn(
          `modbus:${this.config.id}:${device}:decode`,
          { source: this.config.id, device, metric: register.metric },
          `modbus: cannot decode: ${(err as Error).message}`,
        );
        continue;
      }
      const candidate = {
        device,
        metric: register.metric,
        value,
        ts: now,
        ...(register.unit !== undefined ? { unit: register.unit } : {}),
      };
      if (this.deps.ingest.accept(this.config.id, candidate, now) === 'accepted') accepted++;
    }
    if (accepted > 0) {
      d.readings += accepted;
      d.status.lastReadingAt = now;
      this.stats.delivered(accepted, now);
    }
  }

  private deviceOk(d: DeviceState): void {
    if (d.status.state !== 'connected') {
      if (d.failures > 0)
        this.deps.log.info({ source: this.config.id, device: d.config.id }, 'modbus: device back online');
      d.status.state = 'connected';
      this.deps.metrics.sourceUp.set({ source: this.config.id, device: d.config.id }, 1);
    }
    d.failures = 0;
  }

  private deviceFailed(
    d: DeviceState,
    f: { kind: FailureKind; code?: number; message: string; request: ReadRequest },
  ): void {
    const source = this.config.id;
    const device = d.config.id;
    const r = f.request;
    const where = `unit ${d.config.unitId} ${r.table} ${r.address}+${r.count}`;
    const message = f.kind === 'link' ? f.message : `${f.message} reading ${where}`;
    d.failures++;
    d.status.errors++;
    d.status.lastError = message;
    d.status.state = 'offline';
    this.deps.metrics.sourceUp.set({ source, device }, 0);
    // Link errors are counted once per drop by onLink, not once per device.
    if (f.kind !== 'link') {
      this.deps.metrics.sourceErrors.inc({ source, kind: f.kind });
      this.stats.failed(`${device}: ${message}`);
    }
    this.deps.warn.warn(
      `modbus:${source}:${device}:${f.kind}`,
      { source, device, kind: f.kind, ...(f.code !== undefined ? { exception: f.code } : {}) },
      `modbus: device offline: ${message}`,
    );
  }
}
