import type { Clock, TimerHandle } from './clock.js';
import { writtenRule } from './config/rules.js';
import { type CompiledRule, compileRule } from './engine/compile.js';
import type { DuplicateFilter } from './engine/dedupe.js';
import { RuleEngine } from './engine/engine.js';
import type { OutputRecord } from './engine/records.js';
import type { EventBus } from './events.js';
import { InternalErrors } from './internal-errors.js';
import { type Logger, RateLimitedLog } from './log.js';
import type { Metrics } from './metrics.js';
import type { Reading } from './model/reading.js';
import { type RuleProblem, type RuleSpec, validateRule } from './model/rule.js';
import { formatTimestamp } from './model/timestamp.js';
import { RevisionsBeforeRestart } from './revisions-before-restart.js';
import type { Db } from './store/database.js';
import type { Outbox } from './store/outbox.js';
import { loadDecisionStates, OutputWriter } from './store/output-writer.js';
import type { ReadingWriter } from './store/reading-writer.js';
import type { RuleStore, StoredRule } from './store/rule-store.js';

/** How often idleness is applied (SPEC §2 "Idleness"): the last window of a silent sensor still closes. */
const TICK_MS = 1_000;

/** A rule as the API shows it: where it comes from and its spec as the user wrote it. */
export interface RuleView {
  id: string;
  origin: 'config' | 'api';
  spec: unknown;
  /** API rules only, ISO-8601 UTC. */
  createdAt?: string;
  updatedAt?: string;
}

/** What a change did: the rule now running, and what became of its open windows. */
export interface RuleChange {
  rule: RuleView;
  created: boolean;
  /** `empty`: a new rule starts with no windows; `discarded`: the old rule's windows and decision state are gone. */
  windows: 'empty' | 'discarded';
  /** Groups (open windows, decision state) of the old rule that were discarded. */
  discardedGroups: number;
}

export type RuleChangeFailure = 'invalid' | 'exists' | 'unknown' | 'read_only';

/** A change refused before anything changed. */
export class RuleChangeError extends Error {
  constructor(
    readonly reason: RuleChangeFailure,
    message: string,
    readonly problems: RuleProblem[] = [],
  ) {
    super(message);
    this.name = 'RuleChangeError';
  }
}

interface RuleEntry {
  origin: 'config' | 'api';
  spec: unknown;
  createdAt: number | null;
  updatedAt: number | null;
}

/**
 * The engine in live mode: every reading the bus announces runs through the rules; results,
 * decisions and late readings go to the store in the same group commit as the readings, and
 * decision state is restored at start. The engine itself stays pure: this is its I/O shell.
 */
export class LiveRules {
  readonly engine: RuleEngine;
  /** The rules at start (config rules in file order, then API rules in creation order): what the rebuild runs. */
  readonly rules: CompiledRule[];
  /** The rules running now, by id. */
  private readonly running = new Map<string, CompiledRule>();
  private readonly entries = new Map<string, RuleEntry>();
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
    this.rules = configRules.map(compileRule);
    for (const spec of configRules) {
      this.entries.set(spec.id, {
        origin: 'config',
        spec: writtenRule(spec),
        createdAt: null,
        updatedAt: null,
      });
    }
    for (const stored of deps.store.list()) {
      const compiled = this.loadStored(stored);
      if (compiled === null) continue;
      this.rules.push(compiled);
      this.entries.set(stored.id, {
        origin: 'api',
        spec: stored.spec,
        createdAt: stored.createdAt,
        updatedAt: stored.updatedAt,
      });
    }
    for (const r of this.rules) {
      this.running.set(r.id, r);
      this.forward.set(r.id, new Set(r.forward.map(recordType)));
    }
    this.engine = new RuleEngine([...this.rules], { clock: deps.idleClock ?? deps.clock, live: true });
    this.output = new OutputWriter(deps.db, {
      clock: deps.clock,
      changedDecisionStates: () => this.engine.takeChangedDecisionStates(),
      outbox: deps.outbox ? { outbox: deps.outbox, forward: this.forward } : undefined,
    });
  }

  /** A stored API rule, compiled; null (and logged) when the config uses its id or it no longer validates. */
  private loadStored(stored: StoredRule): CompiledRule | null {
    const { log } = this.deps;
    if (this.entries.has(stored.id)) {
      log.warn(
        { rule: stored.id },
        'a rule created through the API has the id of a config-file rule: the config-file rule runs, the API rule is ignored',
      );
      return null;
    }
    const checked = validateRule(stored.spec);
    if (!checked.ok) {
      log.error(
        { rule: stored.id, problems: checked.problems },
        'a stored API rule is no longer valid: not running it',
      );
      return null;
    }
    return compileRule(checked.rule);
  }

  /** Every rule, in the order they run: config rules in file order, then API rules in creation order. */
  list(): RuleView[] {
    return this.engine.ruleIds.map((id) => this.view(id, this.entries.get(id) as RuleEntry));
  }

  get(id: string): RuleView | null {
    const entry = this.entries.get(id);
    return entry && this.engine.has(id) ? this.view(id, entry) : null;
  }

  /** The rules running now, API changes included (the engine keeps them in its own order). */
  compiled(): CompiledRule[] {
    return [...this.running.values()];
  }

  /** Every problem of a rule (empty when it is valid); changes nothing. */
  validate(input: unknown): RuleProblem[] {
    const checked = this.check(input);
    return 'problems' in checked ? checked.problems : [];
  }

  /** Creates an API rule; it runs from the next reading on, after the other rules. */
  create(input: unknown): RuleChange {
    const compiled = this.compile(input);
    if (this.entries.has(compiled.id)) {
      const origin = (this.entries.get(compiled.id) as RuleEntry).origin;
      throw new RuleChangeError('exists', `rule ${compiled.id} already exists (${origin})`);
    }
    return this.save(compiled, input, false);
  }

  /**
   * Creates or replaces an API rule. A replaced rule keeps its place in the run order and starts
   * fresh: its open windows and decision state are discarded. Config-file rules are read-only.
   */
  put(id: string, input: unknown): RuleChange {
    const entry = this.entries.get(id);
    if (entry?.origin === 'config') {
      throw new RuleChangeError(
        'read_only',
        `rule ${id} comes from the config file and is read-only through the API`,
      );
    }
    const body = withId(id, input);
    const compiled = this.compile(body);
    return this.save(compiled, body, entry !== undefined);
  }

  /** Deletes an API rule with its windows and decision state; returns how many groups were discarded. */
  remove(id: string): number {
    const entry = this.entries.get(id);
    if (entry === undefined) throw new RuleChangeError('unknown', `no rule ${id}`);
    if (entry.origin === 'config') {
      throw new RuleChangeError(
        'read_only',
        `rule ${id} comes from the config file and is read-only through the API`,
      );
    }
    // The store first: if it fails, the rule keeps running unchanged.
    this.deps.store.delete(id);
    const { groups } = this.engine.removeRule(id);
    this.entries.delete(id);
    this.running.delete(id);
    this.forward.delete(id);
    this.forgetEmitted(id);
    this.deps.log.info({ rule: id, discardedGroups: groups }, 'rule deleted through the API');
    return groups;
  }

  private check(input: unknown): { spec: RuleSpec } | { problems: RuleProblem[] } {
    const checked = validateRule(input);
    return checked.ok ? { spec: checked.rule } : { problems: checked.problems };
  }

  /** Validates and compiles, so that nothing changes unless the rule can run. */
  private compile(input: unknown): CompiledRule {
    const checked = this.check(input);
    if ('problems' in checked) {
      throw new RuleChangeError('invalid', 'the rule is not valid', checked.problems);
    }
    try {
      return compileRule(checked.spec);
    } catch (err) {
      throw new RuleChangeError('invalid', 'the rule does not compile', [
        { path: [], message: (err as Error).message },
      ]);
    }
  }

  private save(compiled: CompiledRule, input: unknown, replacing: boolean): RuleChange {
    const id = compiled.id;
    // The store first (one transaction, which also drops the rule's decision state): if it
    // fails, the engine is untouched and the old rule keeps running.
    const stored = this.deps.store.save(id, input, this.deps.clock.now());
    const groups = replacing ? this.engine.replaceRule(compiled).groups : 0;
    if (!replacing) this.engine.addRule(compiled);
    this.entries.set(id, {
      origin: 'api',
      spec: stored.spec,
      createdAt: stored.createdAt,
      updatedAt: stored.updatedAt,
    });
    this.running.set(id, compiled);
    this.forward.set(id, new Set(compiled.forward.map(recordType)));
    this.forgetEmitted(id);
    this.deps.log.info(
      { rule: id, discardedGroups: groups },
      replacing ? 'rule replaced through the API' : 'rule created through the API',
    );
    return {
      rule: this.view(id, this.entries.get(id) as RuleEntry),
      created: !replacing,
      windows: replacing ? 'discarded' : 'empty',
      discardedGroups: groups,
    };
  }

  /**
   * Results stored before the restart by a rule of the same id say nothing about the new rule's
   * windows, and decision states of the old rule not yet committed must not be written after it.
   */
  private forgetEmitted(id: string): void {
    this.output.discardStates(id);
    this.restored?.forgetRule(id);
  }

  private view(id: string, e: RuleEntry): RuleView {
    return {
      id,
      origin: e.origin,
      spec: e.spec,
      ...(e.createdAt !== null ? { createdAt: formatTimestamp(e.createdAt) } : {}),
      ...(e.updatedAt !== null ? { updatedAt: formatTimestamp(e.updatedAt) } : {}),
    };
  }

  /**
   * Rebuilds the windows that were open when the gateway last stopped (or crashed) from the stored
   * readings, restores decision state, and starts following the bus. `duplicates` learns the
   * rebuilt readings, so a QoS 1 redelivery after a crash is not counted twice.
   */
  start(duplicates?: DuplicateFilter): void {
    const rebuilt = this.rebuild(duplicates);
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
    const errors = new InternalErrors(
      this.deps.metrics,
      new RateLimitedLog(this.deps.log, () => this.deps.clock.now()),
    );
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
      { rules: this.rules.length, rebuiltFrom: rebuilt, restoredDecisions: states.length },
      'rules running',
    );
  }

  /**
   * Feeds the engine the stored readings of the last `rebuildHorizon` of event time, in arrival
   * order, discarding what it emits: those records were stored with the readings that caused them.
   * Results stored before the restart are remembered, so that a window closed again (e.g. by
   * idleness before the crash, now by a reading) is not emitted twice (SPEC §4); those the rebuild
   * itself emits again need no remembering.
   */
  private rebuild(duplicates?: DuplicateFilter): number {
    const { db } = this.deps;
    const maxTs = db.prepare('SELECT max(ts) FROM readings').pluck().get() as number | null;
    if (maxTs === null || this.rules.length === 0) return 0;
    this.newestTs = maxTs;
    const horizon = rebuildHorizon(this.rules);
    const from = maxTs - horizon;
    const stored = db
      .prepare(
        `SELECT rule, key, start, "end", max(revision) AS revision FROM results WHERE "end" >= ?
         GROUP BY rule, key, start, "end"`,
      )
      .all(from) as { rule: string; key: string; start: number; end: number; revision: number }[];
    const idleTimeout = Math.max(...this.rules.map((r) => r.idleTimeout));
    const restored = new RevisionsBeforeRestart(horizon, this.deps.clock.now() + idleTimeout + horizon);
    for (const r of stored) restored.remember(r.rule, r.key, r.start, r.end, r.revision);
    const rows = db
      .prepare(
        `SELECT s.device, s.metric, r.value, r.ts, r.tags, s.unit FROM readings r JOIN series s ON s.id = r.series_id
         WHERE r.ts >= ? ORDER BY r.seq`,
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
      // Discarded (stored with their readings), but they show how far the rebuild caught up.
      for (const r of this.engine.process(reading)) restored.repeats(r);
      n++;
    }
    if (restored.size > 0) this.restored = restored;
    return n;
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
    if (this.output.add(records)) this.deps.writer.soon();
    this.deps.writer.queued();
  }
}

/** The body of a PUT with the id of its path: the body's id must be that id or absent. */
function withId(id: string, input: unknown): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return input;
  const body = input as Record<string, unknown>;
  if (body.id === undefined) return { id, ...body };
  if (body.id !== id) {
    throw new RuleChangeError('invalid', 'the body names another rule than the path', [
      {
        path: ['id'],
        message: `expected ${JSON.stringify(id)} (the id in the path) or no id, found ${JSON.stringify(body.id)}`,
      },
    ]);
  }
  return body;
}

/** A rule's `forward` kind → the record type it forwards. */
function recordType(kind: 'results' | 'decisions' | 'late'): OutputRecord['type'] {
  return kind === 'results' ? 'result' : kind === 'decisions' ? 'decision' : 'late';
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
