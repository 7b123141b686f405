/**
 * engine/ — the rule engine: window assigners and operators, watermarks, aggregates,
 * expressions, decisions. Pure: no I/O, no wall clock (time is an injected Clock).
 * May import model/ and runtime/clock.ts only.
 */
/**
 * The rule engine (SPEC §2): pure, no I/O; time comes only from the injected Clock, and only for
 * idleness in live mode. Rules run in file order on each reading. Rules are indexed by metric (the
 * rules whose metric glob accepts the name) and, per device, by metric (those whose device glob
 * accepts the device too): a reading meets only the rules that can see it, found with two map
 * lookups, never by testing every rule.
 *
 * Rules can change at run time (the REST API): each runner owns a *slot* in the per-device arrays,
 * stable while the rule lives, so that a change never disturbs the state of the other rules.
 */

import type { Reading } from '../model/reading.js';
import type { OutputRecord } from '../model/records.js';
import type { Clock } from '../runtime/clock.js';
import type { CompiledRule } from './compile.js';
import type { DecisionStateRecord } from './decision.js';
import { type AlignedOperatorFactory, RuleRunner } from './rule-runner.js';
import { DeviceClock } from './watermark.js';

export interface EngineOptions {
  clock: Clock;
  /** false: replay/backtest, no idleness; true: the live gateway, which calls tick() periodically. */
  live: boolean;
  /**
   * Live mode: forget the groups of idle devices that hold nothing (default true). The results are
   * the same either way (a property test checks it); only memory differs.
   */
  forgetIdle?: boolean;
  /** The operator of tumbling and sliding windows; tests compare the default with a reference. */
  alignedWindows?: AlignedOperatorFactory;
}

/** Per device name: its clock in each rule (by slot), and per metric the rules that match both. */
interface DeviceEntry {
  clocks: (DeviceClock | undefined)[];
  /** A cache, built on demand; dropped while the device is idle everywhere. */
  runners: Map<string, RuleRunner[]> | null;
  /** The rule set `runners` was built for (see RuleEngine.generation). */
  generation: number;
}

const NOTHING: OutputRecord[] = Object.freeze([]) as unknown as OutputRecord[];
const METRIC_INDEX_LIMIT = 10_000;
/** Ticks (about seconds) between two sweeps of idle devices' rule index. */
const CACHE_SWEEP_TICKS = 10;

/** What a rule change did to the state of the rule it replaced or removed. */
export interface RuleStateDiscarded {
  /** Groups (each with its open windows and decision state) the old rule had; discarded. */
  groups: number;
}

export class RuleEngine {
  /** File order; rules added at run time go last. */
  private readonly runners: RuleRunner[];
  /** The number of slots ever needed at once: the length of a device entry's clocks. */
  private slots: number;
  /** Slots of removed rules, cleared in every device entry, to reuse. */
  private readonly freeSlots: number[] = [];
  private byMetric = new Map<string, RuleRunner[]>();
  /** Bumped by every rule change: the per-device indexes built before are stale. */
  private generation = 0;
  private readonly devices = new Map<string, DeviceEntry>();
  private readonly valueEnv = new Float64Array(1);
  private out: OutputRecord[] = [];
  private seq = 0;
  private ticks = 0;

  constructor(
    rules: CompiledRule[],
    private readonly options: EngineOptions,
  ) {
    this.runners = rules.map(
      (r, i) => new RuleRunner(r, i, options.live, options.forgetIdle ?? true, options.alignedWindows),
    );
    this.slots = this.runners.length;
  }

  /** The ids of the rules, in the order they run. */
  get ruleIds(): string[] {
    return this.runners.map((r) => r.id);
  }

  has(id: string): boolean {
    return this.runners.some((r) => r.id === id);
  }

  /** Adds a rule after the others; it starts with no windows and no decision state. */
  addRule(rule: CompiledRule): void {
    if (this.has(rule.id)) throw new Error(`rule ${rule.id} already exists`);
    const slot = this.freeSlots.pop() ?? this.slots++;
    this.runners.push(
      new RuleRunner(
        rule,
        slot,
        this.options.live,
        this.options.forgetIdle ?? true,
        this.options.alignedWindows,
      ),
    );
    this.rulesChanged();
  }

  private rulesChanged(): void {
    this.byMetric = new Map();
    this.generation++;
  }

  /**
   * Replaces a rule in its position. The new rule starts fresh: the old one's device clocks,
   * groups, open windows and decision states are discarded.
   */
  replaceRule(rule: CompiledRule): RuleStateDiscarded {
    const i = this.position(rule.id);
    const old = this.runners[i] as RuleRunner;
    const discarded = this.clearSlot(old);
    this.runners[i] = new RuleRunner(
      rule,
      old.slot,
      this.options.live,
      this.options.forgetIdle ?? true,
      this.options.alignedWindows,
    );
    this.rulesChanged();
    return discarded;
  }

  /** Removes a rule with all its state. */
  removeRule(id: string): RuleStateDiscarded {
    const i = this.position(id);
    const old = this.runners[i] as RuleRunner;
    const discarded = this.clearSlot(old);
    this.runners.splice(i, 1);
    this.freeSlots.push(old.slot);
    this.rulesChanged();
    return discarded;
  }

  private position(id: string): number {
    const i = this.runners.findIndex((r) => r.id === id);
    if (i < 0) throw new Error(`no rule ${id}`);
    return i;
  }

  /** Forgets every device's clock in the runner's slot; counts its groups (also those forgotten while idle). */
  private clearSlot(runner: RuleRunner): RuleStateDiscarded {
    const slot = runner.slot;
    for (const entry of this.devices.values()) entry.clocks[slot] = undefined;
    return { groups: runner.groupCount };
  }

  /**
   * One validated, de-duplicated reading in arrival order; returns the records it caused, in
   * fine-print-12 order. An empty result is a shared frozen array.
   */
  process(reading: Reading): OutputRecord[] {
    const seq = ++this.seq;
    const now = this.options.live ? this.options.clock.now() : 0;
    if (this.runnersFor(reading.metric).length === 0) return NOTHING;
    let entry = this.devices.get(reading.device);
    if (entry === undefined) {
      entry = { clocks: new Array(this.slots), runners: null, generation: this.generation };
      this.devices.set(reading.device, entry);
    }
    // Fine print 1: a reading that fails match or where is invisible to the rule.
    const runners = this.runnersOf(entry, reading);
    const out = this.out;
    const valueEnv = this.valueEnv;
    for (let i = 0; i < runners.length; i++) {
      const runner = runners[i] as RuleRunner;
      const k = runner.slot;
      const where = runner.rule.where;
      if (where !== null) {
        valueEnv[0] = reading.value;
        if (!where(valueEnv)) continue;
      }
      let d = entry.clocks[k];
      if (d === undefined) {
        d = new DeviceClock(reading.device);
        entry.clocks[k] = d;
      }
      runner.process(reading, d, seq, now, out);
    }
    return this.take();
  }

  /** Live mode only: applies idleness at clock.now(); returns the records of windows that closed. */
  tick(): OutputRecord[] {
    if (!this.options.live) return NOTHING;
    const now = this.options.clock.now();
    for (const r of this.runners) r.tick(now, this.out);
    if (++this.ticks % CACHE_SWEEP_TICKS === 0) this.dropIdleCaches();
    return this.take();
  }

  /** Devices whose groups are all forgotten keep their clocks (a few numbers), not their rule index. */
  private dropIdleCaches(): void {
    for (const entry of this.devices.values()) {
      if (entry.runners === null) continue;
      let resting = true;
      for (const d of entry.clocks) {
        if (d !== undefined && (d.feeds.length > 0 || d.ownGroup !== null)) {
          resting = false;
          break;
        }
      }
      if (resting) entry.runners = null;
    }
  }

  /** End of bounded input: every watermark to +∞, everything flushed (count windows: nothing partial). */
  flush(): OutputRecord[] {
    for (const r of this.runners) r.flush(this.out);
    return this.take();
  }

  /** What the engine holds: devices known, groups in memory, groups forgotten while idle. */
  stats(): { devices: number; groups: number; rested: number } {
    let groups = 0;
    let rested = 0;
    for (const r of this.runners) {
      groups += r.groupCount - r.restedCount;
      rested += r.restedCount;
    }
    return { devices: this.devices.size, groups, rested };
  }

  /** The decision state of every (rule, group) that has one, to persist. */
  decisionStates(): DecisionStateRecord[] {
    return this.runners.flatMap((r) => r.decisionStates(this.clocksIn(r.slot)));
  }

  /**
   * The decision states that changed since the last call: what the live gateway persists with each
   * commit, instead of every group's state each time.
   */
  takeChangedDecisionStates(): DecisionStateRecord[] {
    const states: DecisionStateRecord[] = [];
    for (const r of this.runners) r.takeChangedDecisionStates(states);
    return states;
  }

  /** Restores persisted decision states; call before the first reading. Unknown rules are ignored. */
  restoreDecisionStates(states: DecisionStateRecord[]): void {
    const byId = new Map(this.runners.map((r) => [r.id, r]));
    for (const s of states) byId.get(s.rule)?.restoreDecisionState(s);
  }

  private *clocksIn(slot: number): Iterable<DeviceClock | undefined> {
    for (const entry of this.devices.values()) yield entry.clocks[slot];
  }

  private take(): OutputRecord[] {
    const out = this.out;
    if (out.length === 0) return NOTHING;
    this.out = [];
    return out;
  }

  /** The rules, in order, whose match accepts this reading's device and metric. */
  private runnersOf(entry: DeviceEntry, reading: Reading): RuleRunner[] {
    if (entry.generation !== this.generation || entry.runners === null) {
      entry.runners = new Map();
      entry.generation = this.generation;
    }
    let list = entry.runners.get(reading.metric);
    if (list === undefined) {
      list = this.runnersFor(reading.metric).filter((r) => r.rule.matchDevice(reading.device));
      if (entry.runners.size >= METRIC_INDEX_LIMIT) entry.runners = new Map();
      entry.runners.set(reading.metric, list);
    }
    return list;
  }

  private runnersFor(metric: string): RuleRunner[] {
    let list = this.byMetric.get(metric);
    if (list === undefined) {
      list = this.runners.filter((r) => r.rule.matchMetric(metric));
      if (this.byMetric.size >= METRIC_INDEX_LIMIT) this.byMetric = new Map();
      this.byMetric.set(metric, list);
    }
    return list;
  }
}
