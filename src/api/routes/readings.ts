import { Router } from 'express';
import { z } from 'zod';
import { formatDuration, parseDuration } from '../../model/duration.js';
import { readingToJson } from '../../model/reading.js';
import { formatTimestamp } from '../../model/timestamp.js';
import type { ReadingsQuery } from '../../store/readings-query.js';
import { ApiError } from '../errors.js';
import {
  decodeCursor,
  encodeCursor,
  limitParam,
  nameParam,
  namesParam,
  orderParam,
  parseQuery,
  single,
  timeParam,
} from '../query.js';

export const readingsParams = z.strictObject({
  device: namesParam.optional(),
  metric: namesParam.optional(),
  from: timeParam.optional(),
  to: timeParam.optional(),
  limit: limitParam,
  order: orderParam,
  cursor: z.string().optional(),
  /** Downsampling: bucket width (duration, ≥ 1 s) and aggregate (default avg). */
  step: single
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === null || ms < 1000 || ms > 366 * 86_400_000) {
        ctx.issues.push({
          code: 'custom',
          input: text,
          message: 'expected a duration from 1s to 366d, e.g. 1m',
        });
        return z.NEVER;
      }
      return ms;
    })
    .optional(),
  agg: z.enum(['avg', 'min', 'max', 'sum', 'count', 'first', 'last']).optional(),
});

export const latestParams = z.strictObject({ device: nameParam.optional() });

const toPosition = ([ts, seq]: number[]) => ({ ts: ts as number, seq: seq as number });

export function readingsRoutes(query: ReadingsQuery): Router {
  const router = Router();

  router.get('/readings', (req, res) => {
    const p = parseQuery(readingsParams, req.query);
    if (p.from !== undefined && p.to !== undefined && p.from >= p.to) {
      throw new ApiError('bad_request', 'from must be before to', [
        { path: 'from', message: 'not before to' },
      ]);
    }
    if (p.agg !== undefined && p.step === undefined) {
      throw new ApiError('bad_request', 'agg needs step', [
        { path: 'agg', message: 'give step too, e.g. step=1m' },
      ]);
    }
    const common = {
      ...(p.device ? { devices: p.device } : {}),
      ...(p.metric ? { metrics: p.metric } : {}),
      ...(p.from !== undefined ? { from: p.from } : {}),
      ...(p.to !== undefined ? { to: p.to } : {}),
      order: p.order,
      limit: p.limit,
    };
    if (p.step !== undefined) {
      const agg = p.agg ?? 'avg';
      const after = p.cursor !== undefined ? decodeCursor(p.cursor, p.order, 2) : undefined;
      const page = query.downsample({
        ...common,
        step: p.step,
        agg,
        ...(after ? { after: { bucket: after[0] as number, series: after[1] as number } } : {}),
      });
      res.json({
        step: formatDuration(p.step),
        agg,
        items: page.items.map((pt) => ({
          device: pt.device,
          metric: pt.metric,
          ts: formatTimestamp(pt.ts),
          value: pt.value,
          count: pt.count,
          ...(pt.unit ? { unit: pt.unit } : {}),
        })),
        next: page.next ? encodeCursor([page.next.bucket, page.next.series], p.order) : null,
      });
      return;
    }
    const page = query.readings({
      ...common,
      ...(p.cursor !== undefined ? { after: toPosition(decodeCursor(p.cursor, p.order, 2)) } : {}),
    });
    res.json({
      items: page.items.map(readingToJson),
      next: page.next ? encodeCursor([page.next.ts, page.next.seq], p.order) : null,
    });
  });

  router.get('/readings/latest', (req, res) => {
    const p = parseQuery(latestParams, req.query);
    const items = query.latest(p.device).map(readingToJson);
    res.json({ items });
  });

  return router;
}
