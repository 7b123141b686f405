import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { name, num } from '../../schema/fields.js';
import { ConfigError, type ConfigProblem, issuesToProblems, locate } from '../../schema/problems.js';
import { parseYaml } from '../../schema/yaml-file.js';

/**
 * Device profiles (SPEC §3): which Modbus registers of a device model hold which metric, and how
 * to turn their raw words or bits into a number. One YAML file per model in `devicesDir`.
 */

export const TABLES = ['holding', 'input', 'coil', 'discrete'] as const;
export type Table = (typeof TABLES)[number];
export const REGISTER_TYPES = ['int16', 'uint16', 'int32', 'uint32', 'float32', 'float64', 'bool'] as const;
export type RegisterType = (typeof REGISTER_TYPES)[number];

/** 16-bit words a type spans in a register table (bits are one coil or discrete input each). */
export const WORDS: Record<RegisterType, number> = {
  int16: 1,
  uint16: 1,
  int32: 2,
  uint32: 2,
  float32: 2,
  float64: 4,
  bool: 1,
};

export const isBitTable = (table: Table): boolean => table === 'coil' || table === 'discrete';

const order = z.enum(['big', 'little']);
const finite = num(z.number().finite());

export const registerSchema = z
  .strictObject({
    metric: name,
    table: z.enum(TABLES),
    /** 0-based protocol address (register 30001 of a data sheet is input address 0). */
    address: num(z.number().int().min(0).max(65535)),
    type: z.enum(REGISTER_TYPES),
    /** big: the most significant word comes first (at the lower address). */
    wordOrder: order.default('big'),
    /** big: the most significant byte of each word comes first (Modbus' own order). */
    byteOrder: order.default('big'),
    /** For `bool` in a holding or input register: which bit (0 = least significant). */
    bit: num(z.number().int().min(0).max(15)).optional(),
    scale: finite.default(1),
    offset: finite.default(0),
    unit: z.string().min(1).max(32).optional(),
  })
  .superRefine((r, ctx) => {
    const bits = isBitTable(r.table);
    if (bits && r.type !== 'bool')
      ctx.addIssue({
        code: 'custom',
        path: ['type'],
        message: `a ${r.table} holds one bit: expected type "bool", found "${r.type}"`,
      });
    if (bits && r.bit !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['bit'],
        message: `"bit" applies to holding and input registers only`,
      });
    if (!bits && r.type === 'bool' && r.bit === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['bit'],
        message: `a bool in a ${r.table} register needs "bit" (0–15) saying which bit of the register`,
      });
    if (!bits && r.type !== 'bool' && r.bit !== undefined)
      ctx.addIssue({ code: 'custom', path: ['bit'], message: `"bit" applies to type bool only` });
    if (!bits && r.address + WORDS[r.type] - 1 > 65535)
      ctx.addIssue({
        code: 'custom',
        path: ['address'],
        message: `a ${r.type} spans ${WORDS[r.type]} registers: it does not fit at address ${r.address}`,
      });
  });

export const profileSchema = z
  .strictObject({
    profile: z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, {
      message: 'expected 1–64 characters of [a-z0-9_.-], starting with a letter or digit',
    }),
    description: z.string().default(''),
    registers: z.array(registerSchema).min(1),
  })
  .superRefine((p, ctx) => {
    const seen = new Map<string, number>();
    p.registers.forEach((r, i) => {
      const first = seen.get(r.metric);
      if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['registers', i, 'metric'],
          message: `duplicate metric "${r.metric}" (also registers[${first}])`,
        });
      else seen.set(r.metric, i);
    });
  });

export type Profile = z.output<typeof profileSchema>;
export type ProfileRegister = Profile['registers'][number];
/** What decoding needs of a register. */
export type RegisterFormat = Pick<
  ProfileRegister,
  'table' | 'type' | 'wordOrder' | 'byteOrder' | 'bit' | 'scale' | 'offset'
>;

/** Parses one profile file's text; throws ConfigError with every problem, located in the file. */
export function parseProfileText(text: string, file: string): Profile {
  const { doc, lines, data } = parseYaml(text, file);
  const result = profileSchema.safeParse(data ?? {}, { reportInput: true });
  if (!result.success) throw new ConfigError(issuesToProblems(result.error.issues, file, doc, lines));
  return result.data;
}

/**
 * Every `*.yaml` / `*.yml` profile in `dir`, by profile name. Throws ConfigError listing the
 * problems of every file (and names used by two files), each with file, line and path.
 */
export function loadProfiles(dir: string): Map<string, Profile> {
  let files: string[];
  try {
    files = readdirSync(dir)
      .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
      .sort();
  } catch (err) {
    throw new ConfigError([
      {
        file: dir,
        path: [],
        message: `cannot read the device profiles directory: ${(err as Error).message}`,
      },
    ]);
  }
  const profiles = new Map<string, Profile>();
  const origin = new Map<string, string>();
  const problems: ConfigProblem[] = [];
  for (const f of files) {
    const file = join(dir, f);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push({ file, path: [], message: `cannot read the file: ${(err as Error).message}` });
      continue;
    }
    try {
      const profile = parseProfileText(text, file);
      const other = origin.get(profile.profile);
      if (other !== undefined) {
        const { doc, lines } = parseYaml(text, file);
        problems.push({
          file,
          path: ['profile'],
          message: `duplicate profile name "${profile.profile}" (also in ${other})`,
          ...locate(doc, lines, ['profile'], false),
        });
        continue;
      }
      origin.set(profile.profile, file);
      profiles.set(profile.profile, profile);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return profiles;
}

// ---- decoding: raw words and bits to values (pure) ----

const scratch = new DataView(new ArrayBuffer(8));

/**
 * The raw number of a register-table value starting at `words[at]`: words put most significant
 * first (undoing `wordOrder: little`), bytes of each word swapped for `byteOrder: little`, then read
 * big-endian. A bool is its `bit` of the (byte-ordered) word, 0 or 1.
 */
export function decodeWords(
  format: Pick<RegisterFormat, 'type' | 'wordOrder' | 'byteOrder' | 'bit'>,
  words: ArrayLike<number>,
  at = 0,
): number {
  const n = WORDS[format.type];
  if (at < 0 || at + n > words.length)
    throw new RangeError(`a ${format.type} at ${at} needs ${n} word(s), only ${words.length} read`);
  for (let i = 0; i < n; i++) {
    const w = (words[format.wordOrder === 'big' ? at + i : at + n - 1 - i] as number) & 0xffff;
    scratch.setUint16(i * 2, format.byteOrder === 'big' ? w : ((w & 0xff) << 8) | (w >>> 8));
  }
  switch (format.type) {
    case 'int16':
      return scratch.getInt16(0);
    case 'uint16':
      return scratch.getUint16(0);
    case 'int32':
      return scratch.getInt32(0);
    case 'uint32':
      return scratch.getUint32(0);
    case 'float32':
      return shortestFloat32(scratch.getFloat32(0));
    case 'float64':
      return scratch.getFloat64(0);
    case 'bool':
      return (scratch.getUint16(0) >>> (format.bit ?? 0)) & 1;
  }
}

/**
 * A float32 as the shortest decimal that is the same float32: a meter's 230.1 V is 230.1, not
 * 230.10000610351562 (the exact value of the nearest float32).
 */
export function shortestFloat32(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  for (let p = 1; p < 9; p++) {
    const candidate = Number(x.toPrecision(p));
    if (Math.fround(candidate) === x) return candidate;
  }
  return x;
}

/** raw × scale + offset; a scale of 1/10ⁿ divides, so 215 × 0.1 is 21.5 and 3 × 0.1 is 0.3. */
export function applyScale(raw: number, format: Pick<RegisterFormat, 'scale' | 'offset'>): number {
  const { scale, offset } = format;
  let v = raw;
  if (scale !== 1) {
    const inverse = 1 / scale;
    v = Math.abs(inverse) > 1 && Number.isInteger(inverse) ? raw / inverse : raw * scale;
  }
  return offset === 0 ? v : v + offset;
}

/** The value of a register-table register starting at `words[at]`. */
export function decodeRegister(format: RegisterFormat, words: ArrayLike<number>, at = 0): number {
  return applyScale(decodeWords(format, words, at), format);
}

/** The value of a coil or discrete input at `bits[at]` (0/1, then scale and offset). */
export function decodeBit(
  format: Pick<RegisterFormat, 'scale' | 'offset'>,
  bits: ArrayLike<boolean>,
  at = 0,
): number {
  if (at < 0 || at >= bits.length) throw new RangeError(`bit ${at} not read (only ${bits.length})`);
  return applyScale(bits[at] ? 1 : 0, format);
}
