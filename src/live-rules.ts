import type { Clock, TimerHandle } from './clock.js';
import type { CompiledRule } from './engine/compile.js';
import type { DuplicateFilter } from './engine/dedupe.js';
import { RuleEngine } from './engine/engine.js';
import type { OutputRecord } from './engine/records.js';
import type { EventBus } from './events.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { Reading } from './model/reading.js';
import type { Db } from './store/database.js';
import type { Outbox } from './store/outbox.js';
import { loadDecisionStates, OutputWriter } from './store/output-writer.js';
import type { ReadingWriter } from './store/reading-writer.js';

/** How often idleness is applied (SPEC §2 "Idleness"): the last window of a silent sensor still closes. */
const TICK_MS = 1_000;

/**
 * The engine in live mode: every reading the bus announces runs through the rules; results,
 * decisions and late readings go to the store in the same group commit as the readings, and
 * decision state is restored at start. The engine itself stays pure: this is its I/O shell.
 */
export class LiveRules {
  readonly engine: RuleEngine;
  private readonly output: OutputWriter;
  private unsubscribe: (() => void) | null = null;
  private timer: TimerHandle | null = null;
  /** Windows whose result was stored before the restart → the last revision stored. */
  private readonly emitted = new Map<string, number>();

  constructor(
    readonly rules: CompiledRule[],
    private readonly deps: {
      db: Db;
      writer: ReadingWriter;
      bus: EventBus;
      clock: Clock;
      metrics: Metrics;
      log: Logger;
      /** Present when there are upstreams: each rule's `forward` kinds go there. */
      outbox?: Outbox | undefined;
    },
  ) {
    this.engine = new RuleEngine(rules, { clock: deps.clock, live: true });
    const forward = new Map(rules.map((r) => [r.id, new Set(r.forward.map(recordType))]));
    this.output = new OutputWriter(deps.db, {
      clock: deps.clock,
      decisionStates: () => this.engine.decisionStates(),
      outbox: deps.outbox ? { outbox: deps.outbox, forward } : undefined,
    });
  }

  /**
   * Rebuilds the windows that were open when the gateway last stopped (or crashed) from the stored
   * readings, restores decision state, and starts following the bus. `duplicates` learns the
   * rebuilt readings, so a QoS 1 redelivery after a crash is not counted twice.
   */
  start(duplicates?: DuplicateFilter): void {
    const rebuilt = this.rebuild(duplicates);
    const known = new Set(this.rules.map((r) => r.id));
    const states = loadDecisionStates(this.deps.db).filter((s) => known.has(s.rule));
    this.engine.restoreDecisionStates(states);
    this.deps.writer.attach(this.output);
    this.unsubscribe = this.deps.bus.on('reading', (reading) => this.emit(this.engine.process(reading)));
    this.timer = this.deps.clock.setInterval(() => this.emit(this.engine.tick()), TICK_MS);
    this.deps.log.info(
      { rules: this.rules.length, rebuiltFrom: rebuilt, restoredDecisions: states.length },
      'rules running',
    );
  }

  /**
   * Feeds the engine the stored readings of the last `rebuildHorizon` of event time, in arrival
   * order, discarding what it emits: those records were stored with the readings that caused them.
   * Results stored before the restart are remembered, so that a window closed again (e.g. by
   * idleness before the crash, now by a reading) is not emitted twice (SPEC §4).
   */
  private rebuild(duplicates?: DuplicateFilter): number {
    const { db } = this.deps;
    const maxTs = db.prepare('SELECT max(ts) FROM readings').pluck().get() as number | null;
    if (maxTs === null) return 0;
    const from = maxTs - rebuildHorizon(this.rules);
    const emitted = db
      .prepare(
        `SELECT rule, key, start, "end", max(revision) AS revision FROM results WHERE "end" >= ?
         GROUP BY rule, key, start, "end"`,
      )
      .all(from) as { rule: string; key: string; start: number; end: number; revision: number }[];
    for (const r of emitted) this.emitted.set(windowId(r.rule, r.key, r.start, r.end), r.revision);
    const rows = db
      .prepare(
        `SELECT s.device, s.metric, r.value, r.ts, r.tags, s.unit FROM readings r JOIN series s ON s.id = r.series_id
         WHERE r.ts >= ? ORDER BY r.id`,
      )
      .iterate(from) as IterableIterator<{
      device: string;
      metric: string;
      value: number;
      ts: number;
      tags: string | null;
      unit: string | null;
    }>;
    let n = 0;
    for (const row of rows) {
      const reading: Reading = { device: row.device, metric: row.metric, value: row.value, ts: row.ts };
      if (row.tags) reading.tags = JSON.parse(row.tags) as Record<string, string>;
      duplicates?.isDuplicate(reading);
      this.engine.process(reading);
      n++;
    }
    return n;
  }

  /** Drops a result already emitted before the restart with this revision or a later one. */
  private alreadyEmitted(r: OutputRecord): boolean {
    if (r.type !== 'result' || this.emitted.size === 0) return false;
    const id = windowId(r.rule, JSON.stringify(r.key), Date.parse(r.start), Date.parse(r.end));
    const revision = this.emitted.get(id);
    return revision !== undefined && r.revision <= revision;
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.timer?.cancel();
    this.timer = null;
  }

  private emit(all: readonly OutputRecord[]): void {
    if (all.length === 0) return;
    const records = this.emitted.size === 0 ? all : all.filter((r) => !this.alreadyEmitted(r));
    const m = this.deps.metrics;
    for (const r of records) {
      if (r.type === 'result') (r.revision === 0 ? m.windowsClosed : m.resultRevisions).inc({ rule: r.rule });
      else if (r.type === 'decision') m.decisions.inc({ rule: r.rule, state: r.state });
      else m.lateDropped.inc({ rule: r.rule });
    }
    this.output.add(records);
    this.deps.writer.queued();
  }
}

/** A rule's `forward` kind → the record type it forwards. */
function recordType(kind: 'results' | 'decisions' | 'late'): OutputRecord['type'] {
  return kind === 'results' ? 'result' : kind === 'decisions' ? 'decision' : 'late';
}

function windowId(rule: string, key: string, start: number, end: number): string {
  return `${rule}\u0000${key}\u0000${start}\u0000${end}`;
}

/**
 * How far back (event time, from the newest stored reading) windows can still be open: twice the
 * longest window, gap, out-of-orderness and lateness of any rule, at least a minute. Count windows
 * have no time extent; the same horizon bounds what they can rebuild.
 */
export function rebuildHorizon(rules: readonly CompiledRule[]): number {
  let span = 60_000;
  for (const r of rules) {
    const w = r.window;
    const extent = w.type === 'session' ? w.gap : w.type === 'count' ? 0 : w.size;
    span = Math.max(span, 2 * (extent + r.maxOutOfOrder + r.lateness));
  }
  return span;
}
