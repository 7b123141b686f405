import type { z } from 'zod';
import { bindsOverlap, isLoopbackHost } from '../runtime/hosts.js';

/**
 * Checks across sections of the configuration, so that `validate` refuses what `run` would. They
 * run even when fields have problems (to report every problem at once), so they read the data
 * defensively: any field may be missing or of the wrong type.
 */

type Ctx = z.core.$RefinementCtx;
type Loose = Record<string, unknown>;

function list(v: unknown): Loose[] {
  return Array.isArray(v) ? v.filter((x): x is Loose => typeof x === 'object' && x !== null) : [];
}

function section(v: unknown): Loose {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Loose) : {};
}

export function checkAcrossSections(config: unknown, ctx: Ctx): void {
  const c = section(config);
  const api = section(c['api']);
  const broker = section(c['broker']);
  checkUnique(list(c['sources']), 'id', ['sources'], 'source id', ctx);
  checkUnique(list(c['upstreams']), 'id', ['upstreams'], 'upstream id', ctx);
  checkUnique(list(broker['users']), 'username', ['broker', 'users'], 'user', ctx);
  checkEmbeddedBrokerUsers(c, broker, ctx);
  checkNatsGatewayId(c, ctx);
  checkApiExposure(api, ctx);
  checkPortsApart(api, broker, ctx);
}

function checkUnique(items: Loose[], key: string, at: (string | number)[], what: string, ctx: Ctx): void {
  const seen = new Set<unknown>();
  items.forEach((item, i) => {
    const value = item[key];
    if (typeof value === 'string' && seen.has(value)) {
      ctx.addIssue({ code: 'custom', path: [...at, i, key], message: `duplicate ${what} "${value}"` });
    }
    seen.add(value);
  });
}

/** mqtt sources and upstreams without url read and publish into the embedded broker: it must be there. */
function checkEmbeddedBrokerUsers(c: Loose, broker: Loose, ctx: Ctx): void {
  if (broker['enabled'] !== false) return;
  const uses = [
    ['sources', 'an mqtt source without url reads the embedded broker'],
    ['upstreams', 'an mqtt upstream without url publishes into the embedded broker'],
  ] as const;
  for (const [key, what] of uses) {
    list(c[key]).forEach((item, i) => {
      if (item['type'] === 'mqtt' && item['url'] === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: [key, i, 'url'],
          message: `${what}, but broker.enabled is false`,
        });
      }
    });
  }
}

/** A dot in the gateway id would split its subject token: `tidegate.site.a.>` would also be gateway `site`'s. */
function checkNatsGatewayId(c: Loose, ctx: Ctx): void {
  const id = section(c['gateway'])['id'];
  if (typeof id !== 'string' || !id.includes('.')) return;
  if (!list(c['upstreams']).some((u) => u['type'] === 'nats')) return;
  ctx.addIssue({
    code: 'custom',
    path: ['gateway', 'id'],
    message: `a nats upstream puts the gateway id in one subject token: expected no dot, found "${id}"`,
  });
}

/** SPEC §5: beyond loopback only with a token, or knowingly insecure; a disabled API binds nothing. */
function checkApiExposure(api: Loose, ctx: Ctx): void {
  if (api['enabled'] === false) return;
  const host = typeof api['host'] === 'string' ? api['host'] : '127.0.0.1';
  const hasToken = typeof api['token'] === 'string' && api['token'] !== '';
  if (!isLoopbackHost(host) && !hasToken && api['insecure'] !== true) {
    ctx.addIssue({
      code: 'custom',
      path: ['api', 'token'],
      message: `the API binds to ${host}, beyond loopback: set api.token (at least 16 characters) or, knowingly, api.insecure: true`,
    });
  }
}

/** Both would bind the port and the second, the API, would fail at start. Port 0 is the kernel's pick. */
function checkPortsApart(api: Loose, broker: Loose, ctx: Ctx): void {
  if (api['enabled'] === false || broker['enabled'] === false) return;
  const port = api['port'];
  if (typeof port !== 'number' || port === 0 || port !== broker['port']) return;
  const apiHost = typeof api['host'] === 'string' ? api['host'] : '127.0.0.1';
  const brokerHost = typeof broker['host'] === 'string' ? broker['host'] : '0.0.0.0';
  if (!bindsOverlap(apiHost, brokerHost)) return;
  const where = apiHost === brokerHost ? `${apiHost}:${port}` : `port ${port} (${apiHost} and ${brokerHost})`;
  ctx.addIssue({
    code: 'custom',
    path: ['api', 'port'],
    message: `the API and the embedded broker both listen on ${where}: give one of them another port`,
  });
}
