import type { OutputRecord } from '../model/records.js';

interface StoredWindow {
  end: number;
  revision: number;
}

/**
 * Windows whose result was stored before a restart, each with the last revision stored. The engine,
 * rebuilt from the stored readings, may close such a window again (idleness closed it before the
 * crash, a reading or idleness closes it now), and no revision may be emitted twice (SPEC §4).
 * A window is forgotten once the engine has caught up with its stored revision, or once it is too
 * old to fire again.
 */
export class RevisionsBeforeRestart {
  private readonly windows = new Map<string, StoredWindow>();
  /** No window ends before this (a lower bound, so that most expiry checks are one comparison). */
  private earliestEnd = Number.POSITIVE_INFINITY;

  /**
   * @param horizon event time: a window ending this long before the newest reading cannot be open.
   * @param settledAt wall-clock time by which the rebuilt windows of silent groups have idled out.
   */
  constructor(
    private readonly horizon: number,
    private readonly settledAt: number,
  ) {}

  get size(): number {
    return this.windows.size;
  }

  /** A stored result; `key` is its group key as stored (JSON). */
  remember(rule: string, key: string, start: number, end: number, revision: number): void {
    this.windows.set(windowId(rule, key, start, end), { end, revision });
    if (end < this.earliestEnd) this.earliestEnd = end;
  }

  /**
   * True when `r` is a revision stored before the restart. Once the engine emits the stored revision
   * the window is forgotten: its later revisions are new.
   */
  repeats(r: OutputRecord): boolean {
    if (r.type !== 'result') return false;
    const id = windowId(r.rule, JSON.stringify(r.key), Date.parse(r.start), Date.parse(r.end));
    const stored = this.windows.get(id);
    if (stored === undefined) return false;
    if (r.revision >= stored.revision) this.windows.delete(id);
    return r.revision <= stored.revision;
  }

  /**
   * Forgets the windows that ended more than the horizon before `newestTs`. Not before `settledAt`:
   * a silent group's rebuilt window closes again only by idleness, whatever the other groups' readings.
   */
  expire(newestTs: number, now: number): void {
    const cutoff = newestTs - this.horizon;
    if (now < this.settledAt || cutoff <= this.earliestEnd) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const [id, w] of this.windows) {
      if (w.end < cutoff) this.windows.delete(id);
      else if (w.end < earliest) earliest = w.end;
    }
    this.earliestEnd = earliest;
  }

  /** Forgets a rule's windows: a rule replaced or deleted says nothing about them any more. */
  forgetRule(rule: string): void {
    const prefix = `${rule}\u0000`;
    for (const id of this.windows.keys()) if (id.startsWith(prefix)) this.windows.delete(id);
  }
}

function windowId(rule: string, key: string, start: number, end: number): string {
  return `${rule}\u0000${key}\u0000${start}\u0000${end}`;
}
