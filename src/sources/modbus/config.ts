import { z } from 'zod';
import { durationSchema } from '../../model/duration.js';
import { identifier, name, num, port } from '../../schema/fields.js';
import type { Profile } from './profile.js';

/**
 * The `modbus` source of the gateway configuration (SPEC §3, §6): one bus — a Modbus TCP
 * connection or an RTU serial port — and the devices polled over it.
 */

const connectionFields = z
  .strictObject({
    host: z.string().min(1).optional(),
    port: port.optional(),
    path: z.string().min(1).optional(),
    baudRate: num(z.number().int().min(50).max(4_000_000)).optional(),
    parity: z.enum(['none', 'even', 'odd']).optional(),
    dataBits: num(z.union([z.literal(7), z.literal(8)])).optional(),
    stopBits: num(z.union([z.literal(1), z.literal(2)])).optional(),
  })
  .superRefine((c, ctx) => {
    if ((c.host === undefined) === (c.path === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message:
          c.host === undefined
            ? 'expected either host (Modbus TCP) or path (Modbus RTU serial port)'
            : 'expected either host (Modbus TCP) or path (Modbus RTU serial port), not both',
      });
      return;
    }
    if (c.host !== undefined)
      for (const k of ['baudRate', 'parity', 'dataBits', 'stopBits'] as const)
        if (c[k] !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: [k],
            message: `${k} applies to serial connections (path), not to host`,
          });
    if (c.path !== undefined && c.port !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['port'],
        message: 'port applies to TCP connections (host), not to path',
      });
  });

export type TcpConnection = { kind: 'tcp'; host: string; port: number };
export type RtuConnection = {
  kind: 'rtu';
  path: string;
  baudRate: number;
  parity: 'none' | 'even' | 'odd';
  dataBits: 7 | 8;
  stopBits: 1 | 2;
};
export type ModbusConnection = TcpConnection | RtuConnection;

const connectionSchema = connectionFields.transform(
  (c): ModbusConnection =>
    c.host !== undefined
      ? { kind: 'tcp', host: c.host, port: c.port ?? 502 }
      : {
          kind: 'rtu',
          path: c.path ?? '',
          baudRate: c.baudRate ?? 9600,
          parity: c.parity ?? 'none',
          dataBits: c.dataBits ?? 8,
          stopBits: c.stopBits ?? 1,
        },
);

const retries = num(z.number().int().min(0).max(10));

const deviceSchema = z.strictObject({
  /** The device name readings carry. */
  id: name,
  unitId: num(z.number().int().min(0).max(247)),
  /** A profile name from devicesDir. */
  profile: z.string().min(1),
  interval: durationSchema({ min: 1 }).optional(),
  timeout: durationSchema({ min: 1 }).optional(),
  retries: retries.optional(),
});

export const modbusSourceSchema = z
  .strictObject({
    id: identifier,
    type: z.literal('modbus'),
    connection: connectionSchema,
    interval: durationSchema({ min: 1 }).default(5000),
    timeout: durationSchema({ min: 1 }).default(1000),
    /** Further attempts of a failed request (timeout, CRC error, busy) before the device is offline. */
    retries: retries.default(2),
    /** Silence on the bus between a response and the next request (RTU needs ≥ 3.5 characters). */
    interFrameGap: durationSchema().default(10),
    /** Unused registers read to join two requests into one (coils and discrete inputs: × 16 bits). */
    maxGap: num(z.number().int().min(0).max(121)).default(8),
    /** Registers per request (the protocol allows 125; some devices fewer). */
    maxRegisters: num(z.number().int().min(4).max(125)).default(125),
    devices: z.array(deviceSchema).min(1),
  })
  .superRefine(
    (s, ctx) => {
      const devices = Array.isArray(s.devices) ? (s.devices as { id?: unknown }[]) : [];
      const seen = new Set<unknown>();
      devices.forEach((d, i) => {
        if (typeof d?.id === 'string' && seen.has(d.id))
          ctx.addIssue({
            code: 'custom',
            path: ['devices', i, 'id'],
            message: `duplicate device id "${d.id}"`,
          });
        seen.add(d?.id);
      });
    },
    { when: () => true },
  );

export type ModbusSourceConfig = z.output<typeof modbusSourceSchema>;
export type ModbusDeviceConfig = ModbusSourceConfig['devices'][number];

export interface ModbusSourceProblem {
  /** Index of the source in the list given. */
  source: number;
  /** Path within that source, e.g. ['devices', 0, 'profile']. */
  path: (string | number)[];
  message: string;
}

/**
 * Cross-checks the modbus sources of a configuration against the loaded profiles: unknown
 * profile names, and two sources on one serial port (one port is one bus, with one queue: put
 * its devices in one source). Sources of other types are skipped; input is read defensively so
 * it can run on a configuration that has other problems.
 */
export function checkModbusProfiles(
  sources: readonly unknown[],
  profiles: ReadonlyMap<string, Profile>,
): ModbusSourceProblem[] {
  const problems: ModbusSourceProblem[] = [];
  const known = [...profiles.keys()].sort();
  const ports = new Map<string, number>();
  sources.forEach((s, si) => {
    if (typeof s !== 'object' || s === null) return;
    const source = s as { type?: unknown; devices?: unknown; connection?: unknown };
    if (source.type !== 'modbus') return;
    const path = (source.connection as { path?: unknown } | undefined)?.path;
    if (typeof path === 'string') {
      const other = ports.get(path);
      if (other !== undefined)
        problems.push({
          source: si,
          path: ['connection', 'path'],
          message: `serial port ${path} is already the bus of sources[${other}]: put all devices of one bus in one source`,
        });
      else ports.set(path, si);
    }
    if (!Array.isArray(source.devices)) return;
    source.devices.forEach((d: unknown, i: number) => {
      const profile = (d as { profile?: unknown } | null)?.profile;
      if (typeof profile !== 'string' || profiles.has(profile)) return;
      problems.push({
        source: si,
        path: ['devices', i, 'profile'],
        message: `unknown device profile "${profile}"; known: ${known.length > 0 ? known.join(', ') : 'none (is devicesDir right?)'}`,
      });
    });
  });
  return problems;
}
