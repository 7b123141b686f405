/**
 * A backtest's reader thread: reads the stored history in chunks on a read-only connection of its
 * own and hands them, as transferable columns, to the thread that runs the engine, a few chunks
 * ahead of it. Reading (SQLite) and the engine so use two cores; memory holds at most `ahead`
 * chunks in transit.
 */
import { parentPort, workerData } from 'node:worker_threads';
import {
  type HistoryFilter,
  type PackedReadings,
  ReadingHistory,
  withoutIdleSeriesFilter,
} from '../store/reading-history.js';
import { openHistory } from './history-db.js';
import { yieldToTheGateway } from './priority.js';

export interface ReaderData {
  database: string;
  filter: HistoryFilter;
  chunkSize: number;
  /** Chunks sent before the first is taken. */
  ahead: number;
}

/** Reader → engine: the count of the range first, then chunks (the last one empty). Engine → reader: 'more'. */
export type ReaderMessage = { kind: 'count'; total: number } | { kind: 'chunk'; chunk: PackedReadings };

if (parentPort) {
  const port = parentPort;
  const data = workerData as ReaderData;
  yieldToTheGateway();
  const db = openHistory(data.database);
  // The engine tests every reading against its rules again: a filter that keeps nothing out goes.
  const history = new ReadingHistory(db, withoutIdleSeriesFilter(db, data.filter), data.chunkSize);
  let credits = data.ahead;
  let done = false;
  const pump = () => {
    while (credits > 0 && !done) {
      const chunk = history.nextPacked();
      credits--;
      if (chunk.n === 0) {
        done = true;
        db.close();
      }
      port.postMessage({ kind: 'chunk', chunk } satisfies ReaderMessage, [
        chunk.ts.buffer as ArrayBuffer,
        chunk.value.buffer as ArrayBuffer,
        chunk.series.buffer as ArrayBuffer,
      ]);
    }
    if (done) port.close();
  };
  port.postMessage({ kind: 'count', total: history.count() } satisfies ReaderMessage);
  port.on('message', () => {
    credits++;
    pump();
  });
  pump();
}
