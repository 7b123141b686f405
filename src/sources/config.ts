import { z } from 'zod';
import { durationSchema } from '../model/duration.js';
import { bool, identifier, name, num } from '../schema/fields.js';
import { modbusSourceSchema } from './modbus/config.js';
import { serialSourceSchema } from './serial/config.js';
import { isValidTemplate } from './topic-template.js';

/**
 * The schema of every source (SPEC §6 `sources`): mqtt and simulator here, modbus and serial in
 * their folders. The config's one schema (config/schema.ts) takes the union from here.
 */

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

export const mqttSourceSchema = z.strictObject({
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
  keepalive: durationSchema({ min: 1000 }).default(30_000),
  /** Reconnect backoff: from min, doubling, up to max. */
  reconnect: z
    .strictObject({
      min: durationSchema({ min: 100 }).default(1000),
      max: durationSchema({ min: 100 }).default(30_000),
    })
    .prefault({}),
  /** TLS files (PEM). */
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  rejectUnauthorized: bool().default(true),
});

export const simulatorSourceSchema = z.strictObject({
  id: identifier,
  type: z.literal('simulator'),
  devices: num(z.number().int().min(1).max(10_000)).default(3),
  interval: durationSchema({ min: 1 }).default(1000),
  /** The device ids are `{prefix}-1` … `{prefix}-N`. */
  prefix: name.default('sim'),
  seed: num(z.number().int()).default(1),
  /** Share of readings sent out of order (a few seconds behind) and late (a minute behind). */
  outOfOrder: num(z.number().min(0).max(1)).default(0.02),
  late: num(z.number().min(0).max(1)).default(0.005),
});

export const sourceSchema = z.discriminatedUnion('type', [
  mqttSourceSchema,
  simulatorSourceSchema,
  modbusSourceSchema,
  serialSourceSchema,
]);

export type SourceConfig = z.output<typeof sourceSchema>;
export type MqttSourceConfig = z.output<typeof mqttSourceSchema>;
export type SimulatorSourceConfig = z.output<typeof simulatorSourceSchema>;
export type TopicConfig = MqttSourceConfig['topics'][number];
