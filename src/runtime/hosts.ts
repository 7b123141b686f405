import { isIP } from 'node:net';

/** 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const kind = isIP(host);
  if (kind === 4) return host.startsWith('127.');
  if (kind === 6) return host === '::1' || host.startsWith('::ffff:127.');
  return false;
}

/** The addresses that bind every interface: a port taken on one is taken on all. */
const WILDCARDS = new Set(['0.0.0.0', '::', '::0']);

/** Would listening on one port at both hosts collide? Only when certain: equal, or one binds everything. */
export function bindsOverlap(a: string, b: string): boolean {
  return a === b || WILDCARDS.has(a) || WILDCARDS.has(b);
}
