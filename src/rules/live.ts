/**
 * rules/ — the running rule set in the gateway, the engine's I/O shell. `LiveRules` (here) follows
 * the bus, runs every reading and the idleness tick through the engine, and hands what it emits to
 * the metrics, the bus and the store (in the readings' group commit); catalog.ts is the rules
 * service behind the API (config and API rules, validation, hot apply, persistence through
 * store/rule-store.ts); rebuild.ts rebuilds the open windows from the store after a restart or a
 * crash, and revisions-before-restart.ts keeps results stored before it from being emitted twice.
 * May import engine/, model/, store/, ingest/duplicates.ts (types), config/rules.ts and runtime/.
 */
import type { CompiledRule } from '../engine/compile.js';
import { RuleEngine } from '../engine/engine.js';
import type { DuplicateFilter } from '../ingest/duplicates.js';
import type { OutputRecord } from '../model/records.js';
import type { RuleSpec } from '../model/rule.js';
import type { Clock, TimerHandle } from '../runtime/clock.js';
import type { EventBus } from '../runtime/events.js';
import { InternalErrors } from '../runtime/internal-errors.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { Db } from '../store/database.js';
import type { Outbox } from '../store/outbox.js';
import { loadDecisionStates, OutputWriter } from '../store/output-writer.js';
import type { ReadingWriter } from '../store/reading-writer.js';
import type { RuleStore } from '../store/rule-store.js';
import { RuleCatalog } from './catalog.js';
import { rebuildWindows } from './rebuild.js';
import type { RevisionsBeforeRestart } from './revisions-before-restart.js';

/** How often idleness is applied (SPEC §2 "Idleness"): the last window of a silent sensor still closes. */
const TICK_MS = 1_000;

/**
 * The engine in live mode: every reading the bus announces runs through the rules; results,
 * decisions and late readings go to the store in the same group commit as the readings, and
 * decision state is restored at start. The engine itself stays pure: this is its I/O shell.
 */
export class LiveRules {
  readonly engine: RuleEngine;
  /** The rules service behind the API; its changes apply here at once. */
  readonly catalog: RuleCatalog;
  /** The rules running now, by id. */
  private readonly running = new Map<string, CompiledRule>();
  /** Which record types each rule forwards; shared with the OutputWriter, updated on changes. */
  private readonly forward = new Map<string, Set<OutputRecord['type']>>();
  private readonly output: OutputWriter;
  private unsubscribe: (() => void) | null = null;
  private timer: TimerHandle | null = null;
  /** Results stored before the restart, until the engine has caught up with them; null once none are left. */
  private restored: RevisionsBeforeRestart | null = null;
  /** The newest event time the rules have seen, rebuilt readings included. */
  private newestTs = Number.NEGATIVE_INFINITY;

  constructor(
    configRules: readonly RuleSpec[],
    private readonly deps: {
      db: Db;
      writer: ReadingWriter;
      bus: EventBus;
      clock: Clock;
      /** What idleness is measured on (SPEC §2): the time the gateway kept up; default `clock`. */
      idleClock?: Clock;
      metrics: Metrics;
      log: Logger;
      /** The rules created through the API. */
      store: RuleStore;
      /** Present when there are upstreams: each rule's `forward` kinds go there. */
      outbox?: Outbox | undefined;
    },
  ) {
    this.catalog = new RuleCatalog(configRules, {
      store: deps.store,
      clock: deps.clock,
      log: deps.log,
      bus: deps.bus,
    });
    const rules = this.catalog.rulesAtStart;
    for (const r of rules) {
      this.running.set(r.id, r);
      this.forward.set(r.id, new Set(r.forward.map(recordType)));
    }
    this.engine = new RuleEngine([...rules], { clock: deps.idleClock ?? deps.clock, live: true });
    this.output = new OutputWriter({
      clock: deps.clock,
      changedDecisionStates: () => this.engine.takeChangedDecisionStates(),
      outbox: deps.outbox ? { outbox: deps.outbox, forward: this.forward } : undefined,
    });
    const engine = this.engine;
    this.catalog.applyTo({
      get ruleIds() {
        return engine.ruleIds;
      },
      has: (id) => engine.has(id),
      add: (rule) => {
        engine.addRule(rule);
        this.ran(rule);
      },
      replace: (rule) => {
        const { groups } = engine.replaceRule(rule);
        this.ran(rule);
        return groups;
      },
      remove: (id) => {
        const { groups } = engine.removeRule(id);
        this.running.delete(id);
        this.forward.delete(id);
        this.forgetEmitted(id);
        return groups;
      },
    });
  }

  /** The rules running now, API changes included (the engine keeps them in its own order). */
  compiled(): CompiledRule[] {
    return [...this.running.values()];
  }

  /** A rule added or replaced through the API runs from now on. */
  private ran(rule: CompiledRule): void {
    this.running.set(rule.id, rule);
    this.forward.set(rule.id, new Set(rule.forward.map(recordType)));
    this.forgetEmitted(rule.id);
  }

  /**
   * Results stored before the restart by a rule of the same id say nothing about the new rule's
   * windows, and decision states of the old rule not yet committed must not be written after it.
   */
  private forgetEmitted(id: string): void {
    this.output.discardStates(id);
    this.restored?.forgetRule(id);
  }

  /**
   * Rebuilds the windows that were open when the gateway last stopped (or crashed) from the stored
   * readings, restores decision state, and starts following the bus. `duplicates` learns the
   * rebuilt readings, so a QoS 1 redelivery after a crash is not counted twice.
   */
  start(duplicates?: DuplicateFilter): void {
    const rules = this.catalog.rulesAtStart;
    const rebuilt = rebuildWindows(this.engine, rules, this.deps, duplicates);
    if (rebuilt.newestTs > this.newestTs) this.newestTs = rebuilt.newestTs;
    this.restored = rebuilt.restored;
    const known = new Set(this.engine.ruleIds);
    const states = loadDecisionStates(this.deps.db).filter((s) => known.has(s.rule));
    this.engine.restoreDecisionStates(states);
    this.deps.writer.attach(this.output);
    this.unsubscribe = this.deps.bus.on(
      'reading',
      (reading) => {
        if (reading.ts > this.newestTs) this.newestTs = reading.ts;
        this.emit(this.engine.process(reading));
      },
      'rules',
    );
    const errors = InternalErrors.of(this.deps);
    this.timer = this.deps.clock.setInterval(() => {
      // A timer's throw would reach the process and restart the gateway: counted, and the next tick tries again.
      try {
        this.emit(this.engine.tick());
        this.expireRestored();
      } catch (err) {
        errors.report('rules/tick', err);
      }
    }, TICK_MS);
    this.deps.log.info(
      { rules: rules.length, rebuiltFrom: rebuilt.readings, restoredDecisions: states.length },
      'rules running',
    );
  }

  /** Forgets the stored results of windows that can no longer fire. */
  private expireRestored(): void {
    if (this.restored === null) return;
    this.restored.expire(this.newestTs, this.deps.clock.now());
    if (this.restored.size === 0) this.restored = null;
  }

  /** Windows whose result stored before the restart is still remembered (tests). */
  get restoredWindows(): number {
    return this.restored?.size ?? 0;
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.timer?.cancel();
    this.timer = null;
  }

  private emit(all: readonly OutputRecord[]): void {
    if (all.length === 0) return;
    const restored = this.restored;
    const records = restored === null ? all : all.filter((r) => !restored.repeats(r));
    if (restored?.size === 0) this.restored = null;
    const m = this.deps.metrics;
    const bus = this.deps.bus;
    for (const r of records) {
      // Counted, then announced (the API's /stream), then stored with the readings' commit.
      if (r.type === 'result') {
        (r.revision === 0 ? m.windowsClosed : m.resultRevisions).inc({ rule: r.rule });
        bus.emit('result', r);
      } else if (r.type === 'decision') {
        m.decisions.inc({ rule: r.rule, state: r.state });
        bus.emit('decision', r);
      } else {
        m.lateDropped.inc({ rule: r.rule });
        bus.emit('late', r);
      }
    }
    // Forwarded outputs are committed promptly: the upstreams see them only after the commit.
    if (this.output.add(records)) this.deps.writer.commitSoon();
    this.deps.writer.commitIfFull();
  }
}

/** A rule's `forward` kind → the record type it forwards. */
function recordType(kind: 'results' | 'decisions' | 'late'): OutputRecord['type'] {
  return kind === 'results' ? 'result' : kind === 'decisions' ? 'decision' : 'late';
}
