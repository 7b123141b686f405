import type { Clock, TimerHandle } from './clock.js';
import type { CompiledRule } from './engine/compile.js';
import { RuleEngine } from './engine/engine.js';
import type { OutputRecord } from './engine/records.js';
import type { EventBus } from './events.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { Db } from './store/database.js';
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

  constructor(
    readonly rules: CompiledRule[],
    private readonly deps: {
      db: Db;
      writer: ReadingWriter;
      bus: EventBus;
      clock: Clock;
      metrics: Metrics;
      log: Logger;
    },
  ) {
    this.engine = new RuleEngine(rules, { clock: deps.clock, live: true });
    this.output = new OutputWriter(deps.db, {
      clock: deps.clock,
      decisionStates: () => this.engine.decisionStates(),
    });
  }

  start(): void {
    const known = new Set(this.rules.map((r) => r.id));
    const states = loadDecisionStates(this.deps.db).filter((s) => known.has(s.rule));
    this.engine.restoreDecisionStates(states);
    this.deps.writer.attach(this.output);
    this.unsubscribe = this.deps.bus.on('reading', (reading) => this.emit(this.engine.process(reading)));
    this.timer = this.deps.clock.setInterval(() => this.emit(this.engine.tick()), TICK_MS);
    this.deps.log.info({ rules: this.rules.length, restoredDecisions: states.length }, 'rules running');
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.timer?.cancel();
    this.timer = null;
  }

  private emit(records: readonly OutputRecord[]): void {
    if (records.length === 0) return;
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
