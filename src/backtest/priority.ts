import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * Lowers this thread's scheduling priority (nice 19, the lowest) on Linux, where a thread's id works as a
 * process id for setpriority(2): a backtest takes idle cores at full speed and yields busy ones to
 * the gateway's ingest. Elsewhere the job simply runs at normal priority.
 */
export function yieldToTheGateway(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isSafeInteger(tid) && tid > 0) setPriority(tid, 19);
  } catch {
    // Not Linux, or not allowed: run at normal priority.
  }
}
