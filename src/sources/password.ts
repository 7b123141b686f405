import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/** scrypt parameters: 16 MiB of memory and ~50 ms on a Raspberry Pi 4 per check. */
const N = 16384;
const R = 8;
const P = 1;
const KEY_LENGTH = 32;

function scryptAsync(
  password: string | Buffer,
  salt: Buffer,
  n: number,
  r: number,
  p: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEY_LENGTH, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/** `scrypt$N$r$p$salt$hash`, the value of a broker user's `passwordHash`. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, N, R, P);
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * A hash that no password matches (random salt and key) with the scrypt parameters of `like`, or
 * the defaults: checking an unknown username against it costs what checking a known one does.
 */
export function decoyHash(like?: string): string {
  const params = like?.split('$').slice(1, 4).map(Number);
  const [n, r, p] = params?.length === 3 && params.every(Number.isInteger) ? params : [N, R, P];
  const salt = randomBytes(16).toString('base64');
  return `scrypt$${n}$${r}$${p}$${salt}$${randomBytes(KEY_LENGTH).toString('base64')}`;
}

/** The parts of a `passwordHash`, or null when no password can match it (unknown form, unusable parameters). */
export function parsePasswordHash(
  encoded: string,
): { n: number; r: number; p: number; salt: Buffer; key: Buffer } | null {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [n, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (
    !Number.isInteger(n) ||
    n < 2 ||
    n > 1 << 20 ||
    (n & (n - 1)) !== 0 ||
    !(r >= 1 && r <= 32) ||
    !(p >= 1 && p <= 16)
  ) {
    return null;
  }
  const key = Buffer.from(parts[5] as string, 'base64');
  if (key.length !== KEY_LENGTH) return null;
  return { n, r, p, salt: Buffer.from(parts[4] as string, 'base64'), key };
}

/** Constant-time check of a password against a `passwordHash`; false for a malformed hash. */
export async function verifyPassword(password: string | Buffer, encoded: string): Promise<boolean> {
  const hash = parsePasswordHash(encoded);
  if (hash === null) return false;
  const actual = await scryptAsync(password, hash.salt, hash.n, hash.r, hash.p);
  return timingSafeEqual(actual, hash.key);
}
