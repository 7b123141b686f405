import { z } from 'zod';
import { durationSchema } from '../model/duration.js';
import { bool, identifier, num } from '../schema/fields.js';
import { natsSubjectProblem, streamSubjectsOf } from './subject.js';
import { isValidUpstreamTopic } from './topic.js';

/**
 * The configuration of upstreams (SPEC §4, §6 `upstreams`), one schema per type, joined on
 * `type` by `upstreamSchema` for the gateway's configuration schema.
 */

function urlWith(protocols: readonly string[]) {
  return (text: string): boolean => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return false;
    }
    return protocols.includes(url.protocol) && url.hostname !== '';
  };
}

function protocolOf(text: string): string | null {
  try {
    return new URL(text).protocol;
  } catch {
    return null;
  }
}

/** An unset `${VAR}` substitutes to ''; that means "not set", as for api.token. */
const optionalText = z
  .string()
  .optional()
  .transform((t) => (t === undefined || t === '' ? undefined : t));

const filePath = z.string().min(1, { message: 'expected a file path' }).optional();

/** RFC 9110 token characters. */
const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { message: 'expected an HTTP header name' });
const headerValue = z
  .string()
  .refine((v) => !/[\r\n]/.test(v) && !v.includes('\0'), { message: 'expected a header value on one line' });

export const mqttUpstreamSchema = z
  .strictObject({
    id: identifier,
    type: z.literal('mqtt'),
    /** Absent: publish to the gateway's embedded broker. */
    url: z
      .string()
      .refine(urlWith(['mqtt:', 'mqtts:']), {
        message: 'expected an mqtt:// or mqtts:// URL such as mqtts://broker.local:8883',
      })
      .optional(),
    topic: z
      .string()
      .refine(isValidUpstreamTopic, {
        message:
          'expected an MQTT topic without wildcards, with {gateway}, {type} and {rule} as placeholders, e.g. tidegate/{gateway}/{type}/{rule}',
      })
      .default('tidegate/{gateway}/{type}/{rule}'),
    qos: num(z.union([z.literal(0), z.literal(1)])).default(1),
    username: optionalText,
    password: optionalText,
    /** Default: `tidegate-{gateway}-{id}`. */
    clientId: optionalText.pipe(z.string().max(128).optional()),
    /** PEM files for TLS (mqtts://): the CA to trust (instead of the system's), a client certificate and its key. */
    ca: filePath,
    cert: filePath,
    key: filePath,
    rejectUnauthorized: bool().default(true),
    /** Message ids are 16 bits, and a batch is in flight at once. */
    batchSize: num(z.number().int().min(1).max(10_000)).default(500),
    /** A batch not fully acknowledged by then fails (and is retried). */
    timeout: durationSchema({ min: 1 }).default(10_000),
  })
  .superRefine((c, ctx) => {
    if ((c.cert === undefined) !== (c.key === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [c.cert === undefined ? 'cert' : 'key'],
        message: 'expected cert and key together (a client certificate and its private key)',
      });
    }
    const tls = (['ca', 'cert', 'key'] as const).filter((k) => c[k] !== undefined);
    if (c.url === undefined) {
      for (const k of [
        ...tls,
        ...(['username', 'password', 'clientId'] as const).filter((k) => c[k] !== undefined),
      ]) {
        ctx.addIssue({
          code: 'custom',
          path: [k],
          message: `an mqtt upstream without url publishes to the embedded broker in-process: ${k} needs a url`,
        });
      }
    } else if (protocolOf(c.url) !== 'mqtts:') {
      for (const k of tls) {
        ctx.addIssue({ code: 'custom', path: [k], message: `${k} is for TLS: expected an mqtts:// url` });
      }
    }
  });

export const httpUpstreamSchema = z
  .strictObject({
    id: identifier,
    type: z.literal('http'),
    url: z
      .string()
      .refine(urlWith(['http:', 'https:']), {
        message: 'expected an http:// or https:// URL such as https://ingest.example.com/tidegate',
      })
      .refine((u) => !URL.canParse(u) || (new URL(u).username === '' && new URL(u).password === ''), {
        message: 'expected a URL without credentials: put them in headers (authorization)',
      }),
    batchSize: num(z.number().int().min(1).max(100_000)).default(500),
    /** The whole request, answer included. */
    timeout: durationSchema({ min: 1 }).default(5000),
    headers: z.record(headerName, headerValue).default({}),
    /** A PEM file of the CA to trust for https:// (instead of the system's). */
    ca: filePath,
  })
  .superRefine((c, ctx) => {
    if (c.ca !== undefined && protocolOf(c.url) !== 'https:') {
      ctx.addIssue({ code: 'custom', path: ['ca'], message: 'ca is for TLS: expected an https:// url' });
    }
  });

/** A stream name as NATS takes it: no whitespace, dots, wildcards or path separators. */
const streamName = z.string().regex(/^[A-Za-z0-9_-]{1,255}$/, {
  message: 'expected a stream name of 1–255 characters of [A-Za-z0-9_-]',
});

const natsServer = z
  .string()
  .refine(urlWith(['nats:', 'tls:']), {
    message: 'expected a nats:// or tls:// URL such as nats://10.0.0.5:4222',
  })
  .refine((u) => !URL.canParse(u) || (new URL(u).username === '' && new URL(u).password === ''), {
    message: 'expected a URL without credentials: put them in user/password, token or creds',
  })
  .refine((u) => !URL.canParse(u) || new URL(u).pathname.replace(/^\/$/, '') === '', {
    message: 'expected host and port only, no path',
  });

export const natsUpstreamSchema = z
  .strictObject({
    id: identifier,
    type: z.literal('nats'),
    /** Any of them will do: the client connects to one, and to another when it is lost. */
    servers: z.array(natsServer).min(1, { message: 'expected at least one server URL' }),
    subject: z
      .string()
      .superRefine((t, ctx) => {
        const problem = natsSubjectProblem(t);
        if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
      })
      .default('tidegate.{gateway}.{type}.{rule}'),
    /** The JetStream stream that takes the subjects; it must exist, unless createStream creates it. */
    stream: streamName,
    createStream: z
      .strictObject({
        replicas: num(z.number().int().min(1).max(5)).default(3),
        /** 0: messages are kept whatever their age. */
        maxAge: durationSchema().default(0),
        /** A message id seen again within this time is acknowledged as a duplicate and not stored. */
        duplicateWindow: durationSchema({ min: 100 }).default(120_000),
      })
      .optional(),
    user: optionalText,
    password: optionalText,
    token: optionalText,
    /** A NATS credentials file (a user JWT and its NKey seed). */
    creds: filePath,
    /** PEM files for TLS: the CA to trust (instead of the system's), a client certificate and its key. */
    ca: filePath,
    cert: filePath,
    key: filePath,
    /** Publishes not yet acknowledged by the stream, at most. */
    maxInFlight: num(z.number().int().min(1).max(65_536)).default(1024),
    /** Rows the forwarder hands over at once; maxInFlight / batchSize batches are in flight. */
    batchSize: num(z.number().int().min(1).max(10_000)).default(256),
    /** A batch not fully acknowledged by then fails (and is retried); also the connect and API time-out. */
    timeout: durationSchema({ min: 1 }).default(5000),
  })
  .superRefine((c, ctx) => {
    if ((c.user === undefined) !== (c.password === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [c.user === undefined ? 'user' : 'password'],
        message: 'expected user and password together',
      });
    }
    const ways = [
      ...(c.user !== undefined || c.password !== undefined ? ['user/password'] : []),
      ...(c.token !== undefined ? ['token'] : []),
      ...(c.creds !== undefined ? ['creds'] : []),
    ];
    if (ways.length > 1) {
      ctx.addIssue({
        code: 'custom',
        path: [c.creds !== undefined ? 'creds' : 'token'],
        message: `expected one way to authenticate, found ${ways.join(' and ')}`,
      });
    }
    if ((c.cert === undefined) !== (c.key === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [c.cert === undefined ? 'cert' : 'key'],
        message: 'expected cert and key together (a client certificate and its private key)',
      });
    }
    if (c.batchSize > c.maxInFlight) {
      ctx.addIssue({
        code: 'custom',
        path: ['batchSize'],
        message: `expected at most maxInFlight (${c.maxInFlight}) rows in a batch, found ${c.batchSize}`,
      });
    }
    if (c.createStream !== undefined) {
      const { maxAge, duplicateWindow } = c.createStream;
      if (maxAge > 0 && duplicateWindow > maxAge) {
        ctx.addIssue({
          code: 'custom',
          path: ['createStream', 'duplicateWindow'],
          message: 'expected a duplicate window no longer than maxAge',
        });
      }
      if (natsSubjectProblem(c.subject) === null && streamSubjectsOf(c.subject) === null) {
        ctx.addIssue({
          code: 'custom',
          path: ['subject'],
          message:
            'createStream needs a subject that starts with a literal token (the stream then takes prefix.>), e.g. tidegate.{gateway}.{type}.{rule}',
        });
      }
    }
  });

export const upstreamSchema = z.discriminatedUnion('type', [
  mqttUpstreamSchema,
  httpUpstreamSchema,
  natsUpstreamSchema,
]);

export type MqttUpstreamConfig = z.output<typeof mqttUpstreamSchema>;
export type HttpUpstreamConfig = z.output<typeof httpUpstreamSchema>;
export type NatsUpstreamConfig = z.output<typeof natsUpstreamSchema>;
export type UpstreamConfig = z.output<typeof upstreamSchema>;
