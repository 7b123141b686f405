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
 * Rules that see the same readings the same way (same match, where, groupBy, window, watermark and
 * lateness: `familyKey`) share one `RuleFamily`: its device clocks, groups and windows are kept and
 * worked once per reading for all of them, each rule reading out its own aggregates and decisions.
 *
 * Rules can change at run time (the REST API): each family owns a *slot* in the per-device arrays,
 * stable while the family lives, so that a change never disturbs the state of the other rules. A
 * rule added or changed at run time starts fresh, in a family of its own; a rule removed leaves its
 * family, which lives on for its other members.
 */

import type { Reading } from '../model/reading.js';
import type { OutputRecord } from '../model/records.js';
import type { Clock } from '../runtime/clock.js';
import type { CompiledRule } from './compile.js';
import type { DecisionStateRecord } from './decision.js';
import { type AlignedOperatorFactory, familyKey, RuleFamily, RuleRunner } from './rule-runner.js';
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
  /**
   * Rules with the same match, where, groupBy, window, watermark and lateness share their state
   * (default true). The records are the same either way (a property test checks it); only the work
   * and memory differ.
   */
  shareState?: boolean;
}

/** Per device name: its clock in each rule (by slot), and per metric the rules that match both. */
interface DeviceEntry {
  /** By family slot. */
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
  /** The number of family slots ever needed at once: the length of a device entry's clocks. */
  private slots: number;
  /** Slots of families whose rules were all removed, cleared in every device entry, to reuse. */
  private readonly freeSlots: number[] = [];
  private byMetric = new Map<string, RuleRunner[]>();
  /** Bumped by every rule change: the per-device indexes built before are stale. */
  private generation = 0;
  private readonly devices = new Map<string, DeviceEntry>();
  private readonly valueEnv = new Float64Array(1);
  private out: OutputRecord[] = [];
  private seq = 0;
  /** Counts process(), tick() and flush() calls: a family works each step once for its members. */
  private step = 0;
  private ticks = 0;

  constructor(
    rules: CompiledRule[],
    private readonly options: EngineOptions,
  ) {
    // Rule indices by family, in file order.
    const families = new Map<string, number[]>();
    for (const [i, r] of rules.entries()) {
      const key = options.shareState === false ? String(i) : familyKey(r);
      const members = families.get(key);
      if (members === undefined) families.set(key, [i]);
      else members.push(i);
    }
    const runners = new Array<RuleRunner>(rules.length);
    let slot = 0;
    for (const members of families.values()) {
      const family = this.newFamily(
        members.map((i) => rules[i] as CompiledRule),
        slot++,
      );
      members.forEach((i, m) => {
        runners[i] = new RuleRunner(rules[i] as CompiledRule, family, m);
      });
    }
    this.runners = runners;
    this.slots = slot;
  }

  private newFamily(rules: CompiledRule[], slot: number): RuleFamily {
    const o = this.options;
    return new RuleFamily(rules, slot, o.live, o.forgetIdle ?? true, o.alignedWindows);
  }

  /** A rule changed at run time: a family of its own, in a free slot. */
  private soloRunner(rule: CompiledRule): RuleRunner {
    const slot = this.freeSlots.pop() ?? this.slots++;
    return new RuleRunner(rule, this.newFamily([rule], slot), 0);
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
    this.runners.push(this.soloRunner(rule));
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
    const discarded = this.leave(this.runners[i] as RuleRunner);
    this.runners[i] = this.soloRunner(rule);
    this.rulesChanged();
    return discarded;
  }

  /** Removes a rule with all its state. */
  removeRule(id: string): RuleStateDiscarded {
    const i = this.position(id);
    const discarded = this.leave(this.runners[i] as RuleRunner);
    this.runners.splice(i, 1);
    this.rulesChanged();
    return discarded;
  }

  private position(id: string): number {
    const i = this.runners.findIndex((r) => r.id === id);
    if (i < 0) throw new Error(`no rule ${id}`);
    return i;
  }

  /**
   * The rule leaves its family; the family's state goes with its last member (every device's clock
   * in its slot is forgotten, the slot freed). Counts the rule's groups (also those forgotten while
   * idle).
   */
  private leave(runner: RuleRunner): RuleStateDiscarded {
    const family = runner.family;
    const discarded = { groups: family.groupCount };
    if (family.remove(runner.index) > 0) return discarded;
    const slot = family.slot;
    for (const entry of this.devices.values()) entry.clocks[slot] = undefined;
    this.freeSlots.push(slot);
    return discarded;
  }

  /**
   * One validated, de-duplicated reading in arrival order; returns the records it caused, in
   * fine-print-12 order. An empty result is a shared frozen array.
   */
  process(reading: Reading): OutputRecord[] {
    const seq = ++this.seq;
    const step = ++this.step;
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
      const family = runner.family;
      // A family's members share their where: once it worked the reading, it held.
      if (!family.worked(step)) {
        const where = family.rule.where;
        if (where !== null) {
          valueEnv[0] = reading.value;
          if (!where(valueEnv)) continue;
        }
      }
      const k = family.slot;
      let d = entry.clocks[k];
      if (d === undefined) {
        d = new DeviceClock(reading.device);
        entry.clocks[k] = d;
      }
      family.process(runner.index, reading, d, step, seq, now, out);
    }
    return this.take();
  }

  /** Live mode only: applies idleness at clock.now(); returns the records of windows that closed. */
  tick(): OutputRecord[] {
    if (!this.options.live) return NOTHING;
    const now = this.options.clock.now();
    const step = ++this.step;
    for (const r of this.runners) r.family.tick(r.index, now, step, this.out);
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
    const step = ++this.step;
    for (const r of this.runners) r.family.flush(r.index, step, this.out);
    return this.take();
  }

  /** What the engine holds: devices known, groups in memory, groups forgotten while idle. */
  stats(): { devices: number; groups: number; rested: number } {
    let groups = 0;
    let rested = 0;
    for (const r of this.runners) {
      groups += r.family.groupCount - r.family.restedCount;
      rested += r.family.restedCount;
    }
    return { devices: this.devices.size, groups, rested };
  }

  /** The decision state of every (rule, group) that has one, to persist. */
  decisionStates(): DecisionStateRecord[] {
    return this.runners.flatMap((r) => r.family.decisionStates(r.index, this.clocksIn(r.slot)));
  }

  /**
   * The decision states that changed since the last call: what the live gateway persists with each
   * commit, instead of every group's state each time.
   */
  takeChangedDecisionStates(): DecisionStateRecord[] {
    const states: DecisionStateRecord[] = [];
    for (const r of this.runners) r.family.changedDecisionStates(r.index, states);
    for (const r of this.runners) r.family.clearChangedDecisionStates();
    return states;
  }

  /** Restores persisted decision states; call before the first reading. Unknown rules are ignored. */
  restoreDecisionStates(states: DecisionStateRecord[]): void {
    const byId = new Map(this.runners.map((r) => [r.id, r]));
    for (const s of states) {
      const r = byId.get(s.rule);
      r?.family.restoreDecisionState(r.index, s);
    }
  }

  private *clocksIn(slot: number): Iterable<DeviceClock | undefined> {
    for (const entry of this.devices.values()) yield entry.clocks[slot];
  }

  private take(): OutputRecord[] {
    const out = this.out;
    if (out.length === 0) return NOTHING;
    // Most steps emit one record: a list of one is a small allocation, where the working list grew
    // a backing store of 17 for it.
    if (out.length === 1) return [out.pop() as OutputRecord];
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
