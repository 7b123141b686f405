/** Which readings: devices and metrics (any, when absent) and a time range. */
export interface SeriesTimeFilter {
  devices?: string[];
  metrics?: string[];
  /** Inclusive, epoch ms. */
  from?: number;
  /** Exclusive, epoch ms. */
  to?: number;
}

/**
 * The WHERE fragment (and its parameters) that keeps the series of the device and metric filters,
 * on the column `column`; null without such filters. A subquery on `series`, so that SQLite scans
 * the time range once and tests each row's series id against a small set.
 */
export function seriesFilter(
  filter: Pick<SeriesTimeFilter, 'devices' | 'metrics'>,
  column: string,
): { where: string; params: string[] } | null {
  const where: string[] = [];
  const params: string[] = [];
  if (filter.devices?.length) {
    where.push(`device IN (${filter.devices.map(() => '?').join(',')})`);
    params.push(...filter.devices);
  }
  if (filter.metrics?.length) {
    where.push(`metric IN (${filter.metrics.map(() => '?').join(',')})`);
    params.push(...filter.metrics);
  }
  if (where.length === 0) return null;
  return { where: `${column} IN (SELECT id FROM series WHERE ${where.join(' AND ')})`, params };
}

/** The WHERE fragments (and their parameters) of the device, metric and time filters. */
export function seriesAndTime(filter: SeriesTimeFilter): {
  where: string[];
  params: (string | number)[];
} {
  const where: string[] = [];
  const params: (string | number)[] = [];
  const series = seriesFilter(filter, 'r.series_id');
  if (series) {
    where.push(series.where);
    params.push(...series.params);
  }
  if (filter.from !== undefined) {
    where.push('r.ts >= ?');
    params.push(filter.from);
  }
  if (filter.to !== undefined) {
    where.push('r.ts < ?');
    params.push(filter.to);
  }
  return { where, params };
}
