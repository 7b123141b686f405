import { Router } from 'express';
import { z } from 'zod';
import { formatTimestamp } from '../../model/timestamp.js';
import type { SourceStatus } from '../../sources/source.js';
import type { DeviceRow, ReadingsQuery } from '../../store/readings-query.js';
import { ApiError } from '../errors.js';
import { MAX_LIMIT, nameParam, parseQuery, single } from '../query.js';

export interface DevicesView {
  now(): number;
  staleAfter: number;
  sources(): SourceStatus[];
}

/**
 * A device's status: `offline`/`error` when its source is, `stale` when it has sent nothing for
 * `ingest.staleAfter`, else `online`.
 */
function statusOf(
  d: Omit<DeviceRow, 'metrics'>,
  view: DevicesView,
  sources: Map<string, SourceStatus>,
): string {
  const source = sources.get(d.source);
  const own = source?.devices?.[d.id];
  if (own && own.state !== 'connected') return own.state;
  if (source && (source.state === 'offline' || source.state === 'error' || source.state === 'stopped'))
    return source.state;
  return view.now() - d.lastSeen > view.staleAfter ? 'stale' : 'online';
}

function deviceJson(d: DeviceRow, status: string) {
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

const STATUSES = ['online', 'stale', 'offline', 'error', 'stopped', 'connected'] as const;

/**
 * Optional: with any of them the answer is one page of the matching devices with counts
 * (`total`, `known`, `byStatus`); without them it is every device, as before.
 */
export const devicesParams = z.strictObject({
  q: single.max(128).optional().describe('text the id or the source contains (case-insensitive)'),
  status: z.enum(STATUSES).optional(),
  sort: z.enum(['id', 'attention']).optional().describe('attention: devices not online first, then by id'),
  limit: single
    .regex(/^\d+$/, { message: `expected an integer from 1 to ${MAX_LIMIT}` })
    .transform(Number)
    .pipe(z.number().int().min(1).max(MAX_LIMIT))
    .optional(),
  offset: single
    .regex(/^\d+$/, { message: 'expected an integer from 0' })
    .transform(Number)
    .pipe(z.number().int().min(0))
    .optional(),
});

export function devicesRoutes(query: ReadingsQuery, view: DevicesView): Router {
  const router = Router();
  const sourceMap = () => new Map(view.sources().map((s) => [s.id, s]));

  router.get('/devices', (req, res) => {
    const p = parseQuery(devicesParams, req.query);
    const sources = sourceMap();
    if (Object.keys(p).length === 0) {
      res.json({ items: query.devices().map((d) => deviceJson(d, statusOf(d, view, sources))) });
      return;
    }
    // Counted, filtered and sorted without the latest values: only the page's rows read theirs.
    // (With 5,000 devices, reading every device's values per request grew the heap by ~10 MB.)
    const all = query.deviceList().map((d) => ({ row: d, status: statusOf(d, view, sources) }));
    const byStatus: Record<string, number> = {};
    for (const d of all) byStatus[d.status] = (byStatus[d.status] ?? 0) + 1;
    const needle = p.q?.trim().toLowerCase() ?? '';
    const matching = all.filter(
      ({ row, status }) =>
        (p.status === undefined || status === p.status) &&
        (needle === '' || row.id.toLowerCase().includes(needle) || row.source.toLowerCase().includes(needle)),
    );
    if (p.sort === 'attention') {
      matching.sort(
        (a, b) =>
          Number(a.status === 'online') - Number(b.status === 'online') || (a.row.id < b.row.id ? -1 : 1),
      );
    }
    const offset = p.offset ?? 0;
    const items = matching
      .slice(offset, offset + (p.limit ?? matching.length))
      .map(({ row, status }) => deviceJson({ ...row, metrics: query.latest(row.id) }, status));
    res.json({ items, total: matching.length, known: all.length, byStatus });
  });

  router.get('/devices/:id', (req, res) => {
    const id = req.params.id;
    if (!nameParam.safeParse(id).success) throw new ApiError('not_found', `no device ${JSON.stringify(id)}`);
    const d = query.device(id);
    if (!d) throw new ApiError('not_found', `no device ${JSON.stringify(id)}`);
    res.json(deviceJson(d, statusOf(d, view, sourceMap())));
  });

  return router;
}
