import { z } from 'zod';
import type { RuleSpec } from '../model/rule.js';
import { modbusSourceSchema } from '../sources/modbus/config.js';
import type { Profile } from '../sources/modbus/profile.js';
import { parsePasswordHash } from '../sources/password.js';
import { serialSourceSchema } from '../sources/serial/config.js';
import { isValidTopicFilter } from '../sources/topic-filter.js';
import { isValidTemplate } from '../sources/topic-template.js';
import { upstreamSchema } from '../upstreams/config.js';
import { checkAcrossSections } from './cross-checks.js';
import { bool, boolOr, duration, identifier, name, num, port, size } from './types.js';

/**
 * The one schema of the gateway's configuration (SPEC §6). Validation and the TypeScript types
 * (`GatewayConfig`) both come from here.
 */

const topicFilter = z.string().refine(isValidTopicFilter, { message: 'expected an MQTT topic filter' });

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

const userSchema = z.strictObject({
  username: z.string().min(1).max(128),
  passwordHash: z
    .string()
    .regex(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/, {
      message: 'expected the output of `tidegate hash-password` (scrypt$N$r$p$salt$hash)',
      abort: true,
    })
    // The broker would refuse every login with it, and say nothing at start.
    .refine((h) => parsePasswordHash(h) !== null, {
      message:
        'a hash no password can match (N a power of two up to 2^20, r 1–32, p 1–16, a 32-byte key): make one with `tidegate hash-password`',
    }),
  publish: z.array(topicFilter).default([]),
  subscribe: z.array(topicFilter).default([]),
});

const aclSchema = z.strictObject({
  publish: z.array(topicFilter).default(['#']),
  subscribe: z.array(topicFilter).default(['#']),
});

const brokerSchema = z.strictObject({
  enabled: bool().default(true),
  host: z.string().min(1).default('0.0.0.0'),
  port: port.default(1883),
  maxPayload: size({ min: 16 }).default(64 * 1024),
  /** true: anyone; false: users only; `loopback`: anonymous clients only from 127.0.0.0/8 and ::1. */
  allowAnonymous: boolOr(z.literal('loopback')).default(false),
  /** What anonymous clients may publish and subscribe to. */
  anonymous: aclSchema.prefault({}),
  users: z.array(userSchema).default([]),
});

const ingestSchema = z.strictObject({
  maxFutureSkew: duration().default(5 * 60_000),
  maxMetricsPerMessage: num(z.number().int().min(1).max(10_000)).default(256),
  /** A device with no reading for this long is listed as `stale` by /devices. */
  staleAfter: duration({ min: 1 }).default(5 * 60_000),
  /** Devices the gateway knows at most; a reading from a new one beyond: rejected, `device_limit`. */
  maxDevices: num(z.number().int().min(1).max(10_000_000)).default(10_000),
});

const topicSchema = z.strictObject({
  filter: z.string().refine(isValidTemplate, {
    message:
      'expected an MQTT topic with {device} and/or {metric} filling whole levels, e.g. sensors/{device}/{metric}',
  }),
  qos: num(z.union([z.literal(0), z.literal(1)])).default(0),
  payload: z.enum(['auto', 'number', 'value', 'json']).default('auto'),
  /** A fixed device, for topics that don't name it. */
  device: name.optional(),
  /** A fixed metric, for topics that don't name it. */
  metric: name.optional(),
});

const mqttSourceSchema = z.strictObject({
  id: identifier,
  type: z.literal('mqtt'),
  topics: z.array(topicSchema).min(1),
  /** An external broker (mqtt://, mqtts://, ws://, wss://); absent: the embedded broker. */
  url: z
    .string()
    .regex(/^(mqtts?|wss?):\/\/[^\s]+$/, {
      message: 'expected mqtt://, mqtts://, ws:// or wss:// and a host',
    })
    .optional(),
  username: z.string().optional(),
  password: z.string().optional(),
  /** Default: tidegate-{gateway}-{source id}, stable so that persistent sessions work. */
  clientId: z.string().min(1).max(128).optional(),
  /** false: a persistent session; the broker keeps QoS 1 messages while tidegate is away. */
  clean: bool().default(true),
  keepalive: duration({ min: 1000 }).default(30_000),
  /** Reconnect backoff: from min, doubling, up to max. */
  reconnect: z
    .strictObject({ min: duration({ min: 100 }).default(1000), max: duration({ min: 100 }).default(30_000) })
    .prefault({}),
  /** TLS files (PEM). */
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  rejectUnauthorized: bool().default(true),
});

const simulatorSourceSchema = z.strictObject({
  id: identifier,
  type: z.literal('simulator'),
  devices: num(z.number().int().min(1).max(10_000)).default(3),
  interval: duration({ min: 1 }).default(1000),
  /** The device ids are `{prefix}-1` … `{prefix}-N`. */
  prefix: name.default('sim'),
  seed: num(z.number().int()).default(1),
  /** Share of readings sent out of order (a few seconds behind) and late (a minute behind). */
  outOfOrder: num(z.number().min(0).max(1)).default(0.02),
  late: num(z.number().min(0).max(1)).default(0.005),
});

const sourceSchema = z.discriminatedUnion('type', [
  mqttSourceSchema,
  simulatorSourceSchema,
  modbusSourceSchema,
  serialSourceSchema,
]);

const storeSchema = z.strictObject({
  path: z.string().min(1).default('data/tidegate.db'),
  retention: duration({ min: 60_000 }).default(7 * 86_400_000),
  flushInterval: duration({ min: 1 }).default(200),
  /**
   * Per-minute rollups, latest values and device last_seen are written this often rather than in
   * every commit (SD-card wear); queries see them current. 0: in every commit.
   */
  summaryInterval: duration({ min: 0 }).default(10_000),
  /**
   * A rule output that goes upstream (a forwarded result or decision) is committed, with whatever
   * waits, at most this long after it was made, instead of at the next flushInterval.
   */
  outputFlushInterval: duration({ min: 0 }).default(2),
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
  maintenanceInterval: duration({ min: 100 }).default(5_000),
});

/** What goes upstream besides what each rule's `forward` names. */
const outboxSchema = z.strictObject({
  /** Forward raw readings too. */
  readings: bool().default(false),
  /** With `readings`: at most one reading per (device, metric) per this much event time; 0 = all. */
  readingsInterval: duration().default(0),
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
export type SourceConfig = ParsedConfig['sources'][number];
export type MqttSourceConfig = Extract<SourceConfig, { type: 'mqtt' }>;
export type SimulatorSourceConfig = Extract<SourceConfig, { type: 'simulator' }>;
export type { ModbusSourceConfig } from '../sources/modbus/config.js';
export type TopicConfig = MqttSourceConfig['topics'][number];
export type BrokerConfig = GatewayConfig['broker'];
export type BrokerUser = BrokerConfig['users'][number];
export type StoreConfig = GatewayConfig['store'];
export type OutboxConfig = GatewayConfig['outbox'];
export type ApiConfig = GatewayConfig['api'];
