import { z } from 'zod';
import { bool, boolOr, port, size } from '../schema/fields.js';
import { parsePasswordHash } from './password.js';
import { isValidTopicFilter } from './topic-filter.js';

/** The embedded broker's configuration (SPEC §6 `broker`): listener, limits, anonymous access, users. */

const topicFilter = z.string().refine(isValidTopicFilter, { message: 'expected an MQTT topic filter' });

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

export const brokerSchema = z.strictObject({
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

export type BrokerConfig = z.output<typeof brokerSchema>;
export type BrokerUser = BrokerConfig['users'][number];
