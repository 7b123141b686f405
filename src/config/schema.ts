import { z } from 'zod';
import { durationSchema } from '../model/duration.js';
import type { RuleSpec } from '../model/rule.js';
import { bool, identifier, num, port, size } from '../schema/fields.js';
import { brokerSchema } from '../sources/broker-config.js';
import { sourceSchema } from '../sources/config.js';
import type { Profile } from '../sources/modbus/profile.js';
import { upstreamSchema } from '../upstreams/config.js';
import { checkAcrossSections } from './cross-checks.js';

/**
 * The one schema of the gateway's configuration (SPEC §6). Validation and the TypeScript types
 * (`GatewayConfig`) both come from here.
 */

const logSchema = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

const apiSchema = z.strictObject({
  enabled: bool().default(true),
  host: z.string().min(1).default('127.0.0.1'),
  port: port.default(8080),
  /** Empty (an unset `${TIDEGATE_TOKEN}`) means no token. */
  token: z
    .string()
    .optional()
    .transform((t) => (t === undefined || t === '' ? undefined : t))
    .refine((t) => t === undefined || t.length >= 16, {
      message: 'expected a token of at least 16 characters',
    }),
  insecure: bool().default(false),
  maxBodySize: size({ min: 1024 }).default(1024 * 1024),
  /** Requests per minute per client address; 0 turns rate limiting off. */
  rateLimit: num(z.number().int().min(0)).default(600),
});

const ingestSchema = z.strictObject({
  maxFutureSkew: durationSchema().default(5 * 60_000),
  maxMetricsPerMessage: num(z.number().int().min(1).max(10_000)).default(256),
  /** A device with no reading for this long is listed as `stale` by /devices. */
  staleAfter: durationSchema({ min: 1 }).default(5 * 60_000),
  /** Devices the gateway knows at most; a reading from a new one beyond: rejected, `device_limit`. */
  maxDevices: num(z.number().int().min(1).max(10_000_000)).default(10_000),
});

const storeSchema = z.strictObject({
  path: z.string().min(1).default('data/tidegate.db'),
  retention: durationSchema({ min: 60_000 }).default(7 * 86_400_000),
  flushInterval: durationSchema({ min: 1 }).default(200),
  /**
   * Per-minute rollups, latest values and device last_seen are written this often rather than in
   * every commit (SD-card wear); queries see them current. 0: in every commit. At most an hour:
   * what is held back meanwhile is a device's last_seen after a crash, and memory.
   */
  summaryInterval: durationSchema({ min: 0, max: 3_600_000 }).default(10_000),
  /**
   * A rule output that goes upstream (a forwarded result or decision) is committed, with whatever
   * waits, at most this long after it was made, instead of at the next flushInterval.
   */
  outputFlushInterval: durationSchema({ min: 0 }).default(2),
  /** A group commit also happens as soon as this many readings wait. */
  batchSize: num(z.number().int().min(1).max(1_000_000)).default(5000),
  /** At most this many readings wait in memory when the disk fails; beyond it they are rejected. */
  maxPending: num(z.number().int().min(1000)).default(200_000),
  synchronous: z.enum(['off', 'normal', 'full']).default('normal'),
  /** Store raw readings (false: only what rules produce). */
  readings: bool().default(true),
  /**
   * Cap on the database file. Over it, the oldest raw readings go first, then forwarded outbox
   * rows, then (counted) the oldest unforwarded ones (SPEC §4).
   */
  maxSize: size({ min: 1024 * 1024 }).default(1024 ** 3),
  /** How often the caps are checked (retention runs hourly at most). */
  maintenanceInterval: durationSchema({ min: 100 }).default(5_000),
});

/** What goes upstream besides what each rule's `forward` names. */
const outboxSchema = z.strictObject({
  /** Forward raw readings too. */
  readings: bool().default(false),
  /** With `readings`: at most one reading per (device, metric) per this much event time; 0 = all. */
  readingsInterval: durationSchema().default(0),
  /** Cap on outbox rows, besides store.maxSize. */
  maxRows: num(z.number().int().min(100)).default(1_000_000),
});

export const configSchema = z
  .strictObject({
    gateway: z.strictObject({ id: identifier.default('gw-1') }).prefault({}),
    log: logSchema.prefault({}),
    api: apiSchema.prefault({}),
    broker: brokerSchema.prefault({}),
    ingest: ingestSchema.prefault({}),
    sources: z.array(sourceSchema).default([]),
    /** Where the Modbus device profiles are (one YAML file per device model). */
    devicesDir: z.string().min(1).default('devices'),
    /** A rules file (SPEC §2), or the rules inline; checked by the rule schema in model/rule.ts. */
    rules: z.union([z.string().min(1), z.array(z.unknown())]).default([]),
    store: storeSchema.prefault({}),
    outbox: outboxSchema.prefault({}),
    upstreams: z.array(upstreamSchema).default([]),
  })
  // Run even when fields have problems (`when`), so that `validate` reports every problem at once.
  .superRefine(checkAcrossSections, { when: () => true });

/** The configuration as the schema parses it; `rules` is still a file name or raw rules. */
export type ParsedConfig = z.output<typeof configSchema>;
/** The configuration the gateway runs: rules and device profiles loaded and validated. */
export type GatewayConfig = Omit<ParsedConfig, 'rules'> & {
  rules: RuleSpec[];
  profiles: Map<string, Profile>;
};
export type { BrokerConfig, BrokerUser } from '../sources/broker-config.js';
export type {
  MqttSourceConfig,
  SimulatorSourceConfig,
  SourceConfig,
  TopicConfig,
} from '../sources/config.js';
export type { ModbusSourceConfig } from '../sources/modbus/config.js';
export type StoreConfig = GatewayConfig['store'];
export type OutboxConfig = GatewayConfig['outbox'];
export type ApiConfig = GatewayConfig['api'];
