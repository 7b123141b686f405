import { z } from 'zod';

/**
 * The response bodies of the REST API, as zod schemas: the OpenAPI document is generated from them
 * and the tests validate every response they receive against that document.
 */

export const iso = z.string().describe('ISO-8601 UTC with milliseconds');
const key = z.record(z.string(), z.string().nullable()).describe('the groupBy fields of the group');
const values = z.record(z.string(), z.number().nullable()).describe('aggregate values by alias');
const cursor = z
  .string()
  .nullable()
  .describe('pass back as `cursor` for the next page; null on the last page');

export const errorBody = z.strictObject({
  error: z.strictObject({
    code: z.enum([
      'bad_request',
      'unauthorized',
      'forbidden',
      'not_found',
      'conflict',
      'payload_too_large',
      'unsupported_media_type',
      'unprocessable',
      'rate_limited',
      'unavailable',
      'internal',
    ]),
    message: z.string(),
    details: z.array(z.strictObject({ path: z.string().optional(), message: z.string() })),
  }),
});

export const reading = z.strictObject({
  device: z.string(),
  metric: z.string(),
  value: z.number(),
  ts: iso,
  unit: z.string().optional(),
  tags: z.record(z.string(), z.string()).optional(),
});

export const readingsPage = z.strictObject({ items: z.array(reading), next: cursor });

export const downsampledPage = z.strictObject({
  step: z.string(),
  agg: z.enum(['avg', 'min', 'max', 'sum', 'count', 'first', 'last']),
  items: z.array(
    z.strictObject({
      device: z.string(),
      metric: z.string(),
      ts: iso.describe('bucket start'),
      value: z.number(),
      count: z.number().int(),
      unit: z.string().optional(),
    }),
  ),
  next: cursor,
});

export const latestList = z.strictObject({ items: z.array(reading) });

const deviceState = z.enum(['online', 'stale', 'offline', 'error', 'stopped', 'connected']);

export const device = z.strictObject({
  id: z.string(),
  source: z.string(),
  status: deviceState,
  firstSeen: iso,
  lastSeen: iso,
  metrics: z.array(
    z.strictObject({ metric: z.string(), value: z.number(), ts: iso, unit: z.string().optional() }),
  ),
});

export const deviceList = z.strictObject({
  items: z.array(device),
  total: z.number().int().optional().describe('devices matching q and status (with any query parameter)'),
  known: z.number().int().optional().describe('every device known (with any query parameter)'),
  byStatus: z
    .record(z.string(), z.number().int())
    .optional()
    .describe('every device known, counted by status (with any query parameter)'),
});

const sourceStatus = z.strictObject({
  id: z.string(),
  type: z.string(),
  state: z.enum(['starting', 'connected', 'offline', 'error', 'stopped']),
  lastReadingAt: iso.nullable(),
  readings: z.number().int(),
  errors: z.number().int(),
  lastError: z.string().nullable(),
  devices: z
    .record(
      z.string(),
      z.strictObject({
        state: z.enum(['connected', 'offline', 'error']),
        lastReadingAt: iso.nullable(),
        errors: z.number().int(),
        lastError: z.string().nullable(),
      }),
    )
    .optional(),
});

export const health = z.strictObject({
  status: z.enum(['ok', 'degraded']),
  gateway: z.string(),
  version: z.string(),
  uptime: z.number().int().describe('seconds'),
  startedAt: iso,
  sources: z.array(sourceStatus),
  broker: z
    .strictObject({ listening: z.boolean(), port: z.number().int(), clients: z.number().int() })
    .nullable(),
  store: z.strictObject({
    path: z.string(),
    bytes: z.number().int(),
    pendingWrites: z.number().int(),
    lastError: z.string().nullable(),
  }),
  upstreams: z.array(
    z.strictObject({
      id: z.string(),
      type: z.string(),
      state: z.enum(['connected', 'connecting', 'offline', 'backoff', 'stopped']),
      acked: z.number().int().describe('the last seq the upstream acknowledged'),
      backlog: z.number().int(),
      oldestAgeSeconds: z.number().nullable(),
      lastError: z.string().nullable(),
      lastDeliveryAt: iso.nullable(),
    }),
  ),
  outbox: z.strictObject({ rows: z.number().int(), lastSeq: z.number().int().nullable() }),
});

/** What `/health` answers without the bearer token when `api.token` is set. */
export const healthBrief = health.pick({ status: true, version: true });

export const resultRecord = z.strictObject({
  type: z.literal('result'),
  rule: z.string(),
  key,
  start: iso,
  end: iso,
  count: z.number().int(),
  values,
  revision: z.number().int(),
});

export const decisionRecord = z.strictObject({
  type: z.literal('decision'),
  rule: z.string(),
  key,
  state: z.enum(['ok', 'firing']),
  at: iso,
  values,
});

export const resultsPage = z.strictObject({ items: z.array(resultRecord), next: cursor });
export const decisionsPage = z.strictObject({ items: z.array(decisionRecord), next: cursor });

export const lateRecord = z.strictObject({
  type: z.literal('late'),
  rule: z.string(),
  reading: z.strictObject({ device: z.string(), metric: z.string(), value: z.number(), ts: iso }),
  emittedAt: iso.describe('when the rule set the reading aside'),
});

export const latePage = z.strictObject({ items: z.array(lateRecord), next: cursor });

export const alertList = z.strictObject({
  items: z.array(
    z.strictObject({
      rule: z.string(),
      key,
      state: z.literal('firing'),
      since: iso.nullable(),
      values: values.nullable(),
    }),
  ),
});
