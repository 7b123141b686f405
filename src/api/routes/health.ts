import { Router } from 'express';
import type { ForwarderStatus } from '../../forward/forwarder.js';
import type { SourceStatus } from '../../sources/source.js';
import { authenticated } from '../auth.js';

export interface HealthView {
  gatewayId: string;
  version: string;
  startedAt: number;
  now(): number;
  sources(): SourceStatus[];
  broker(): { listening: boolean; port: number; clients: number } | null;
  store(): { path: string; bytes: number; pendingWrites: number; lastError: string | null };
  upstreams(): ForwarderStatus[];
  outbox(): { rows: number; lastSeq: number | null };
}

/**
 * `GET /health`: `ok`, or `degraded` when a source or upstream is down or store commits are failing.
 * Always 200 while the process serves: it is a report, not a switch. Open without the token, but
 * then (with `api.token` set) only status and version: the rest names paths, hosts and errors.
 */
export function healthRoutes(view: HealthView): Router {
  const router = Router();
  router.get('/health', (_req, res) => {
    const report = healthReport(view);
    res.json(authenticated(res) ? report : { status: report.status, version: report.version });
  });
  return router;
}

function healthReport(view: HealthView) {
  const sources = view.sources().map((s) => ({
    ...s,
    lastReadingAt: s.lastReadingAt === null ? null : new Date(s.lastReadingAt).toISOString(),
  }));
  const store = view.store();
  const upstreams = view.upstreams();
  const degraded =
    store.lastError !== null ||
    sources.some((s) => s.state === 'error' || s.state === 'offline') ||
    upstreams.some((u) => u.state !== 'connected');
  return {
    status: degraded ? 'degraded' : 'ok',
    gateway: view.gatewayId,
    version: view.version,
    uptime: Math.round((view.now() - view.startedAt) / 1000),
    startedAt: new Date(view.startedAt).toISOString(),
    sources,
    broker: view.broker(),
    store,
    upstreams,
    outbox: view.outbox(),
  };
}
