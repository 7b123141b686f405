/**
 * sources/ — the drivers readings come in through, one folder or file each: the embedded broker
 * (mqtt-broker.ts) and MQTT sources (embedded, external), modbus/, serial/, the simulator, payload
 * decoders, topic templates; each driver's config schema (config.ts, broker-config.ts and the
 * drivers' folders) and `createSource` (create.ts). Every reading goes to ingest/. May import
 * model/, schema/, ingest/ and runtime/; never config/.
 */
/**
 * The source interface every driver implements (embedded MQTT, external MQTT, Modbus, serial,
 * simulator). Constructors take their collaborators and do nothing; `start()` connects, `stop()`
 * releases everything. Readings go to the injected `Ingest`.
 */
export type SourceState = 'starting' | 'connected' | 'offline' | 'error' | 'stopped';

export interface SourceStatus {
  id: string;
  type: string;
  state: SourceState;
  /** Epoch ms of the last accepted reading (arrival time), or null. */
  lastReadingAt: number | null;
  readings: number;
  errors: number;
  lastError: string | null;
  /** Per-device state, for sources that poll several devices (Modbus). */
  devices?: Record<string, DeviceStatus>;
}

export interface DeviceStatus {
  state: 'connected' | 'offline' | 'error';
  lastReadingAt: number | null;
  errors: number;
  lastError: string | null;
}

export interface Source {
  readonly id: string;
  readonly type: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): SourceStatus;
}

/** Book-keeping shared by sources for their status. */
export class SourceStats {
  state: SourceState = 'stopped';
  lastReadingAt: number | null = null;
  readings = 0;
  errors = 0;
  lastError: string | null = null;

  constructor(
    readonly id: string,
    readonly type: string,
  ) {}

  delivered(count: number, at: number): void {
    if (count <= 0) return;
    this.readings += count;
    this.lastReadingAt = at;
  }

  failed(message: string): void {
    this.errors++;
    this.lastError = message;
  }

  snapshot(): SourceStatus {
    return {
      id: this.id,
      type: this.type,
      state: this.state,
      lastReadingAt: this.lastReadingAt,
      readings: this.readings,
      errors: this.errors,
      lastError: this.lastError,
    };
  }
}
