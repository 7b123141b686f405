import { Router } from 'express';
import { z } from 'zod';
import { readingToJson } from '../../model/reading.js';
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
  timeParam,
} from '../query.js';

const readingsParams = z.strictObject({
  device: namesParam.optional(),
  metric: namesParam.optional(),
  from: timeParam.optional(),
  to: timeParam.optional(),
  limit: limitParam,
  order: orderParam,
  cursor: z.string().optional(),
});

const latestParams = z.strictObject({ device: nameParam.optional() });

const toPosition = ([ts, id]: number[]) => ({ ts: ts as number, id: id as number });

export function readingsRoutes(query: ReadingsQuery): Router {
  const router = Router();

  router.get('/readings', (req, res) => {
    const p = parseQuery(readingsParams, req.query);
    if (p.from !== undefined && p.to !== undefined && p.from >= p.to) {
      throw new ApiError('bad_request', 'from must be before to', [
        { path: 'from', message: 'not before to' },
      ]);
    }
    const page = query.readings({
      ...(p.device ? { devices: p.device } : {}),
      ...(p.metric ? { metrics: p.metric } : {}),
      ...(p.from !== undefined ? { from: p.from } : {}),
      ...(p.to !== undefined ? { to: p.to } : {}),
      order: p.order,
      limit: p.limit,
      ...(p.cursor !== undefined ? { after: toPosition(decodeCursor(p.cursor, p.order, 2)) } : {}),
    });
    res.json({
      items: page.items.map(readingToJson),
      next: page.next ? encodeCursor([page.next.ts, page.next.id], p.order) : null,
    });
  });

  router.get('/readings/latest', (req, res) => {
    const p = parseQuery(latestParams, req.query);
    const items = query.latest(p.device).map(readingToJson);
    res.json({ items });
  });

  return router;
}
