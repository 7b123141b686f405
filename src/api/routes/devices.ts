import { Router } from 'express';
import { formatTimestamp } from '../../model/timestamp.js';
import type { SourceStatus } from '../../sources/source.js';
import type { DeviceRow, ReadingsQuery } from '../../store/readings-query.js';
import { ApiError } from '../errors.js';
import { nameParam } from '../query.js';

export interface DevicesView {
  now(): number;
  staleAfter: number;
  sources(): SourceStatus[];
}

/**
 * A device's status: `offline`/`error` when its source is, `stale` when it has sent nothing for
 * `ingest.staleAfter`, else `online`.
 */
function deviceJson(d: DeviceRow, view: DevicesView, sources: Map<string, SourceStatus>) {
  const source = sources.get(d.source);
  const own = source?.devices?.[d.id];
  let status: string;
  if (own && own.state !== 'connected') status = own.state;
  else if (source && (source.state === 'offline' || source.state === 'error' || source.state === 'stopped'))
    status = source.state;
  else status = view.now() - d.lastSeen > view.staleAfter ? 'stale' : 'online';
  return {
    id: d.id,
    source: d.source,
    status,
    firstSeen: formatTimestamp(d.firstSeen),
    lastSeen: formatTimestamp(d.lastSeen),
    metrics: d.metrics.map((m) => ({
      metric: m.metric,
      value: m.value,
      ts: formatTimestamp(m.ts),
      ...(m.unit ? { unit: m.unit } : {}),
    })),
  };
}

export function devicesRoutes(query: ReadingsQuery, view: DevicesView): Router {
  const router = Router();
  const sourceMap = () => new Map(view.sources().map((s) => [s.id, s]));

  router.get('/devices', (_req, res) => {
    const sources = sourceMap();
    res.json({ items: query.devices().map((d) => deviceJson(d, view, sources)) });
  });

  router.get('/devices/:id', (req, res) => {
    const id = req.params.id;
    if (!nameParam.safeParse(id).success) throw new ApiError('not_found', `no device ${JSON.stringify(id)}`);
    const d = query.device(id);
    if (!d) throw new ApiError('not_found', `no device ${JSON.stringify(id)}`);
    res.json(deviceJson(d, view, sourceMap()));
  });

  return router;
}
