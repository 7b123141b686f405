import { cpus, totalmem } from 'node:os';

/** One line describing where a benchmark ran, printed before its figures. */
export function machine(): string {
  const cpu = cpus();
  return `${cpu[0]?.model ?? 'unknown CPU'} × ${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${process.platform}/${process.arch}`;
}

export function rssMiB(): string {
  return (process.memoryUsage().rss / 2 ** 20).toFixed(1);
}

/** The value at quantile q (0–1) of an ascending array. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}
