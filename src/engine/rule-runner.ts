/**
 * Rules at run time. A `RuleFamily` is the state that rules seeing the same readings the same way
 * share: rules with the same match, where, groupBy, window, watermark and lateness have the same
 * device clocks, groups, watermarks and windows, so the family keeps them once, with a window
 * operator that aggregates the union of its members' aggregates. What differs per rule is read out
 * per member (`RuleRunner`): its result records (its aliases), its `late` records and its decision
 * state machine per group.
 *
 * A family works each reading (tick, flush) once, when its first member in file order meets it, and
 * keeps what happened — the `late` reading, the windows fired in fine-print-12 order (late
 * re-emissions first, then the windows the watermark closed in (end, start, key) order) — for its
 * other members, which read the same list when their turn in file order comes. Each rule's output
 * is therefore exactly what it would be alone: the same windows, the same merges (so the same bits),
 * in the same order, each decision right after its result.
 */
import type { Reading } from '../model/reading.js';
import type { DecisionState } from '../model/records.js';
import {
  decisionRecord,
  type GroupKey,
  lateRecord,
  type OutputRecord,
  resultRecord,
  valuesObject,
} from '../model/records.js';
import { AggregationPlan } from './aggregates.js';
import { AlignedWindowOperator } from './aligned-windows.js';
import { clear } from './arrays.js';
import type { CompiledRule } from './compile.js';
import { CountWindowOperator } from './count-windows.js';
import { DecisionMachine, type DecisionStateRecord } from './decision.js';
import { SessionWindowOperator } from './session-windows.js';
import { type DeviceClock, GroupWatermark, type IdlePolicy } from './watermark.js';
import { AlignedAssigner } from './window-assigner.js';
import { type FiredWindow, Placement, type WindowOperator } from './window-operator.js';

type KeyValue = string | null;

/** Makes the operator of a tumbling or sliding window's group (tests swap in a reference one). */
export type AlignedOperatorFactory = (
  assigner: AlignedAssigner,
  plan: AggregationPlan,
  lateness: number,
) => WindowOperator;

const slicedWindows: AlignedOperatorFactory = (assigner, plan, lateness) =>
  new AlignedWindowOperator(assigner, plan, lateness);

export class Group extends GroupWatermark {
  /** Per member of the family: its decision state machine here (null: the member has no `when`). */
  readonly decisions: (DecisionMachine | null)[];
  /** With groupBy [device]: the device whose `ownGroup` this is. */
  owner: DeviceClock | null = null;
  /** Wall-clock time of its last reading (count windows, which have no device clocks in the group). */
  placedAt = 0;

  constructor(
    readonly keyValues: readonly KeyValue[],
    readonly key: GroupKey,
    readonly operator: WindowOperator,
    decides: readonly boolean[],
  ) {
    super();
    this.decisions = decides.map((d) => (d ? new DecisionMachine() : null));
  }
}

/**
 * What is left of a group forgotten while idle: exactly what a new group needs to carry on as the old
 * one would have. Its windows were all expired; its watermark has since followed its one idle device
 * at wall speed (SPEC §2 idleness), which `revive()` recomputes.
 */
interface RestedGroup {
  mapKey: unknown;
  /** null when its device keeps it (groupBy [device]): the key is the device's name. */
  keyValues: readonly KeyValue[] | null;
  /** The one device that fed it (null for count windows, which watermarks do not concern). */
  feeder: DeviceClock | null;
  watermark: number;
  /** Per member, its decision machine's state (null: the initial one, or none); null when all are. */
  decisions: (DecisionSnapshot | null)[] | null;
}

interface DecisionSnapshot {
  state: DecisionState;
  streak: number;
  lastEnd: number;
}

function isInitial(m: DecisionMachine): boolean {
  return m.state === 'ok' && m.streak === 0 && m.lastEnd === Number.NEGATIVE_INFINITY;
}

/** One rule of a family: where its outputs are among the family plan's. */
interface Member {
  readonly rule: CompiledRule;
  /** Index of its first output in the family plan's values. */
  readonly offset: number;
}

/**
 * What makes rules share a family: the same readings (match, where), the same groups (groupBy) and
 * the same windows closed at the same time (window, watermark, lateness).
 */
export function familyKey(rule: CompiledRule): string {
  const s = rule.spec;
  const w = rule.window;
  return JSON.stringify([
    s.match.device,
    s.match.metric,
    s.where,
    rule.groupBy,
    w.type,
    w.type === 'session' ? w.gap : w.size,
    w.type === 'sliding' || w.type === 'count' ? (w.slide ?? null) : null,
    rule.maxOutOfOrder,
    rule.idleTimeout,
    rule.lateness,
  ]);
}

/** A rule in the engine's file order: one member of a family. */
export class RuleRunner {
  readonly id: string;

  constructor(
    readonly rule: CompiledRule,
    readonly family: RuleFamily,
    /** Its index among the family's members. */
    readonly index: number,
  ) {
    this.id = rule.id;
  }

  /** The family's slot in the per-device clock arrays. */
  get slot(): number {
    return this.family.slot;
  }
}

interface FiredInGroup {
  group: Group;
  window: FiredWindow;
}

function compareKeys(a: readonly KeyValue[], b: readonly KeyValue[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as KeyValue;
    const y = b[i] as KeyValue;
    if (x === y) continue;
    if (x === null) return -1;
    if (y === null) return 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

function compareFired(a: FiredInGroup, b: FiredInGroup): number {
  return (
    a.window.end - b.window.end ||
    a.window.start - b.window.start ||
    compareKeys(a.group.keyValues, b.group.keyValues)
  );
}

export class RuleFamily {
  /** The members in file order; null where a member was removed (its rule changed or deleted). */
  private readonly members: (Member | null)[];
  /** The members' common settings (match, where, groupBy, window, watermark, lateness): the first's. */
  readonly rule: CompiledRule;
  /** The union of the members' aggregates (a member alone: its own plan). */
  private readonly plan: AggregationPlan;
  private readonly solo: boolean;
  /** Per member: it has a `when` (a decision machine per group). */
  private readonly decides: boolean[];
  private readonly anyDecides: boolean;
  private liveMembers: number;
  /** The engine's step (reading, tick or flush) last worked; its outcome is below. */
  private step = -1;
  /** The step's reading when it was late (the `late` side output). */
  private lateReading: Reading | null = null;
  /** The windows the step fired, in the order every member emits them, with their groups. */
  private readonly emittedGroups: Group[] = [];
  private readonly emittedWindows: FiredWindow[] = [];
  private readonly groups = new Map<unknown, Group>();
  private readonly isCount: boolean;
  /** groupBy is exactly [device]: the group is found from the device clock, no key computed. */
  private readonly byDeviceOnly: boolean;
  private readonly policy: IdlePolicy;
  private readonly fired: FiredWindow[] = [];
  private readonly closed: FiredInGroup[] = [];
  private readonly touched: Group[] = [];
  /** Groups where a member evaluated a window since clearChangedDecisionStates(). */
  private readonly changedStates = new Set<Group>();
  private readonly assigner: AlignedAssigner | null;
  /** Groups forgotten while idle, by map key (see restIdle). */
  private readonly rested = new Map<unknown, RestedGroup>();
  /** Forgotten groups kept by their device (groupBy [device]: no map entry needed). */
  private ownRested = 0;
  /** Wall-clock time of the last tick: idle groups' watermarks have followed it. */
  private lastTick = Number.NEGATIVE_INFINITY;

  constructor(
    rules: readonly CompiledRule[],
    /** Its slot in the per-device clock arrays; a removed family's slot is reused by the next one. */
    readonly slot: number,
    private readonly live: boolean,
    private readonly forgetIdle = true,
    private readonly alignedOperator: AlignedOperatorFactory = slicedWindows,
  ) {
    const rule = rules[0] as CompiledRule;
    this.rule = rule;
    this.solo = rules.length === 1;
    let offset = 0;
    this.members = rules.map((r) => {
      const m = { rule: r, offset };
      offset += r.plan.aliases.length;
      return m;
    });
    this.plan = this.solo ? rule.plan : new AggregationPlan(rules.flatMap((r) => r.spec.aggregates));
    this.decides = rules.map((r) => r.decision !== null);
    this.anyDecides = this.decides.includes(true);
    this.liveMembers = rules.length;
    this.isCount = rule.window.type === 'count';
    this.byDeviceOnly = rule.groupBy.length === 1 && rule.groupBy[0] === 'device';
    this.policy = { maxOutOfOrder: rule.maxOutOfOrder, idleTimeout: live ? rule.idleTimeout : null, now: 0 };
    const w = rule.window;
    this.assigner = w.type === 'tumbling' || w.type === 'sliding' ? new AlignedAssigner(w) : null;
  }

  /**
   * One reading that passed the family's match and where (fine print 1), for member `m`: the family
   * works it at the first member's call of the engine's `step`, every member emits what it did. `d`
   * is the reading device's clock in this family; the engine keeps it so that the device is looked
   * up once per reading.
   */
  process(
    m: number,
    r: Reading,
    d: DeviceClock,
    step: number,
    seq: number,
    now: number,
    out: OutputRecord[],
  ): void {
    if (this.step !== step) {
      this.begin(step);
      this.place(r, d, seq, now);
    }
    this.emitFor(m, out);
  }

  /** True when the family already worked this step (its members share the reading's where). */
  worked(step: number): boolean {
    return this.step === step;
  }

  private begin(step: number): void {
    this.step = step;
    this.lateReading = null;
    clear(this.emittedGroups);
    clear(this.emittedWindows);
  }

  private place(r: Reading, d: DeviceClock, seq: number, now: number): void {
    const fired = this.fired;
    if (this.isCount) {
      const g = this.groupOf(r, d);
      g.placedAt = now;
      g.operator.place(r.metric, r.value, r.ts, seq, 0, fired);
      this.record(g, fired);
      return;
    }
    // A device heard again gets its forgotten groups back first, as they stand now.
    if (d.rested !== null) this.reviveAll(d);
    if (d.ownRest !== null) this.reviveOwn(d);
    // 1. The device's clock advances first (fine print 2) ...
    const oldMax = d.maxTs;
    const advanced = r.ts > oldMax;
    if (advanced) d.maxTs = r.ts;
    // A device back from idleness holds its groups back again: their minimum must be recomputed.
    const wasIdle = this.live && now - d.lastArrival >= this.rule.idleTimeout;
    if (this.live) d.lastArrival = now;
    this.policy.now = now;
    // 2. ... the reading makes its device feed its group ...
    const g = this.groupOf(r, d);
    const touched = this.touched;
    const feedsBefore = d.feeds.length;
    g.addDevice(d);
    if (d.feeds.length !== feedsBefore && g.recompute(this.policy)) touched.push(g);
    // 3. ... every group the device feeds may see its watermark move (fine print 3: never back) ...
    if (advanced || wasIdle) {
      const feeds = d.feeds;
      for (let i = 0; i < feeds.length; i++) {
        const fg = feeds[i] as Group;
        // Only the device holding a group's minimum can move it (or one that was left out as idle).
        if ((fg.minTs === oldMax || wasIdle) && fg.recompute(this.policy)) {
          if (!touched.includes(fg)) touched.push(fg);
        }
      }
    }
    // 4. ... then the reading is placed against its group's watermark: late re-emissions come first.
    const placement = g.operator.place(r.metric, r.value, r.ts, seq, g.watermark, fired);
    if (placement === Placement.Late) this.lateReading = r;
    else if (fired.length > 0) this.record(g, fired);
    // 5. Windows the watermark closed, in (end, start, key) order.
    if (touched.length > 0) {
      this.closeTouched();
      clear(touched);
    }
  }

  /** Live mode: re-evaluates every group's watermark with idleness at `now`; member `m` emits. */
  tick(m: number, now: number, step: number, out: OutputRecord[]): void {
    if (this.step !== step) {
      this.begin(step);
      this.lastTick = now;
      if (!this.isCount) {
        this.policy.now = now;
        for (const g of this.groups.values()) if (g.recompute(this.policy)) this.touched.push(g);
        if (this.touched.length > 0) {
          this.closeTouched();
          clear(this.touched);
        }
      }
      this.restIdle(now);
    }
    this.emitFor(m, out);
  }

  /** End of bounded input: every watermark to +∞; member `m` emits. */
  flush(m: number, step: number, out: OutputRecord[]): void {
    if (this.step !== step) {
      this.begin(step);
      if (!this.isCount) {
        for (const g of this.groups.values()) if (g.raiseTo(Number.POSITIVE_INFINITY)) this.touched.push(g);
        this.closeTouched();
        clear(this.touched);
      }
    }
    this.emitFor(m, out);
  }

  /** Member `m`'s records of the step: its `late` record, or its results and decisions. */
  private emitFor(m: number, out: OutputRecord[]): void {
    const member = this.members[m] as Member;
    if (this.lateReading !== null) out.push(lateRecord(member.rule.id, this.lateReading));
    const groups = this.emittedGroups;
    const windows = this.emittedWindows;
    for (let i = 0; i < groups.length; i++)
      this.emitOne(member, m, groups[i] as Group, windows[i] as FiredWindow, out);
  }

  /** Member `m` leaves (its rule was changed or removed); returns how many members are left. */
  remove(m: number): number {
    if (this.members[m] !== null) {
      this.members[m] = null;
      this.liveMembers--;
    }
    return this.liveMembers;
  }

  /** Groups in memory and groups forgotten while idle. */
  get groupCount(): number {
    return this.groups.size + this.rested.size + this.ownRested;
  }

  /** Groups forgotten while idle (kept as a few numbers each). */
  get restedCount(): number {
    return this.rested.size + this.ownRested;
  }

  /**
   * Forgets the groups that hold nothing a new group would not: no window (all expired), their
   * decision state persisted, and one device feeding them that is idle. What is kept (RestedGroup) is
   * a few numbers; the same results follow as if they had never been forgotten (SPEC §6 maxDevices).
   */
  private restIdle(now: number): void {
    if (!this.live || !this.forgetIdle) return;
    const idle = this.rule.idleTimeout;
    for (const [mapKey, g] of this.groups) {
      if (!g.operator.isEmpty() || this.changedStates.has(g)) continue;
      if (this.isCount) {
        if (now - g.placedAt < idle) continue;
      } else if (g.devices.length !== 1 || now - (g.devices[0] as DeviceClock).lastArrival < idle) continue;
      this.rest(mapKey, g);
    }
  }

  private rest(mapKey: unknown, g: Group): void {
    this.groups.delete(mapKey);
    if (g.owner !== null && g.owner.ownGroup === g) g.owner.ownGroup = null;
    let decisions: (DecisionSnapshot | null)[] | null = null;
    const machines = g.decisions;
    for (let i = 0; i < machines.length; i++) {
      const m = machines[i] as DecisionMachine | null;
      if (m === null || isInitial(m)) continue;
      decisions ??= new Array<DecisionSnapshot | null>(machines.length).fill(null);
      decisions[i] = { state: m.state, streak: m.streak, lastEnd: m.lastEnd };
    }
    // A count group in its initial state is a new group: nothing to keep.
    if (this.isCount && decisions === null) return;
    // Count windows: no feeders; with groupBy [device] the owner keeps what is left (none yet for a
    // group restored from persisted decision state and never fed).
    const feeder = this.isCount ? g.owner : (g.devices[0] as DeviceClock);
    const onDevice = this.byDeviceOnly && feeder !== null;
    const t: RestedGroup = {
      mapKey,
      keyValues: onDevice ? null : g.keyValues,
      feeder,
      watermark: g.watermark,
      decisions,
    };
    if (!this.isCount) {
      const feeds = (feeder as DeviceClock).feeds;
      feeds.splice(feeds.indexOf(g), 1);
      // An empty literal has no backing store: the array a push grew costs ~150 B per idle device.
      if (feeds.length === 0) (feeder as DeviceClock).feeds = [];
    }
    if (onDevice) {
      (feeder as DeviceClock).ownRest = t;
      this.ownRested++;
      return;
    }
    this.rested.set(mapKey, t);
    if (feeder === null || this.isCount) return;
    if (feeder.rested === null) feeder.rested = [t];
    else feeder.rested.push(t);
  }

  private reviveOwn(d: DeviceClock): Group {
    const t = d.ownRest as RestedGroup;
    d.ownRest = null;
    this.ownRested--;
    return this.revive(t);
  }

  private reviveAll(d: DeviceClock): void {
    const list = d.rested as RestedGroup[];
    while (list.length > 0) this.revive(list[list.length - 1] as RestedGroup);
  }

  /** A forgotten group back in memory, as it would stand had it never been forgotten. */
  private revive(t: RestedGroup): Group {
    const d = t.feeder;
    const g = this.newGroup(t.mapKey, t.keyValues ?? [(d as DeviceClock).name]);
    const kept = t.decisions;
    if (kept !== null)
      for (let i = 0; i < kept.length; i++) {
        const k = kept[i];
        if (k) g.decisions[i]?.restore(k);
      }
    if (t.keyValues === null) {
      (d as DeviceClock).ownGroup = g;
      g.owner = d;
    } else {
      this.rested.delete(t.mapKey);
      if (d !== null && !this.isCount) {
        const list = d.rested as RestedGroup[];
        list.splice(list.indexOf(t), 1);
        if (list.length === 0) d.rested = null;
      }
    }
    if (this.isCount || d === null) return g;
    // Every tick since, the idle device's clock was extrapolated at wall speed (GroupWatermark.recompute).
    g.watermark = Math.max(t.watermark, d.maxTs + (this.lastTick - d.lastArrival) - this.rule.maxOutOfOrder);
    g.minTs = Number.POSITIVE_INFINITY;
    g.devices.push(d);
    d.feeds.push(g);
    return g;
  }

  /**
   * Member `m`'s decision state in every group where it has left the initial one; `clocks` are the
   * family's device clocks (the engine keeps them), which hold what is left of forgotten groups with
   * groupBy [device].
   */
  decisionStates(m: number, clocks: Iterable<DeviceClock | undefined> = []): DecisionStateRecord[] {
    const states: DecisionStateRecord[] = [];
    const member = this.members[m];
    if (member === null || member === undefined || !this.decides[m]) return states;
    for (const g of this.groups.values()) {
      const machine = g.decisions[m] as DecisionMachine | null;
      if (machine === null || isInitial(machine)) continue;
      states.push(this.stateOf(member, g.key, machine));
    }
    const forgotten: RestedGroup[] = [...this.rested.values()];
    for (const d of clocks) if (d?.ownRest) forgotten.push(d.ownRest as RestedGroup);
    for (const t of forgotten) {
      const kept = t.decisions?.[m];
      if (!kept) continue;
      const values = t.keyValues ?? [(t.feeder as DeviceClock).name];
      states.push(this.stateOf(member, this.keyOf(values), kept));
    }
    return states;
  }

  /**
   * Member `m`'s decision states evaluated since the last clearChangedDecisionStates() (what must be
   * persisted again), appended to `into`.
   */
  changedDecisionStates(m: number, into: DecisionStateRecord[]): void {
    const member = this.members[m];
    if (member === null || member === undefined || !this.decides[m]) return;
    for (const g of this.changedStates)
      into.push(this.stateOf(member, g.key, g.decisions[m] as DecisionMachine));
  }

  clearChangedDecisionStates(): void {
    this.changedStates.clear();
  }

  private stateOf(member: Member, key: GroupKey, m: DecisionSnapshot): DecisionStateRecord {
    return {
      rule: member.rule.id,
      key,
      state: m.state,
      streak: m.streak,
      lastEnd: m.lastEnd === Number.NEGATIVE_INFINITY ? null : m.lastEnd,
    };
  }

  restoreDecisionState(m: number, s: DecisionStateRecord): void {
    if (!this.decides[m] || typeof s.key !== 'object' || s.key === null) return;
    const values = this.rule.groupBy.map((f) => {
      const v = (s.key as Record<string, unknown>)[f];
      return typeof v === 'string' ? v : null;
    });
    const g = this.groupFor(values);
    g.decisions[m]?.restore(s);
  }

  private closeTouched(): void {
    const closed = this.closed;
    const fired = this.fired;
    const touched = this.touched;
    if (touched.length === 1) {
      // One group: its windows come in (end, start) order already.
      const g = touched[0] as Group;
      g.operator.advance(g.watermark, fired);
      this.record(g, fired);
      return;
    }
    for (let i = 0; i < touched.length; i++) {
      const g = touched[i] as Group;
      g.operator.advance(g.watermark, fired);
      for (let j = 0; j < fired.length; j++) closed.push({ group: g, window: fired[j] as FiredWindow });
      clear(fired);
    }
    if (closed.length > 1 && touched.length > 1) closed.sort(compareFired);
    for (let i = 0; i < closed.length; i++) {
      const c = closed[i] as FiredInGroup;
      this.recordOne(c.group, c.window);
    }
    clear(closed);
  }

  /** Keeps the fired windows of `g`, in their order, for every member to emit. */
  private record(g: Group, fired: FiredWindow[]): void {
    for (let i = 0; i < fired.length; i++) this.recordOne(g, fired[i] as FiredWindow);
    clear(fired);
  }

  private recordOne(g: Group, w: FiredWindow): void {
    this.emittedGroups.push(g);
    this.emittedWindows.push(w);
    // Its decisions are evaluated as members emit it: until persisted, the group is not forgotten.
    if (this.anyDecides && w.revision === 0) this.changedStates.add(g);
  }

  private emitOne(member: Member, m: number, g: Group, w: FiredWindow, out: OutputRecord[]): void {
    const rule = member.rule;
    const env = this.solo ? w.values : this.valuesOf(member, w.values);
    const values = valuesObject(rule.plan.aliases, env);
    out.push(resultRecord(rule.id, g.key, w.start, w.end, w.count, values, w.revision));
    const logic = rule.decision;
    if (logic === null || w.revision !== 0) return;
    // Count windows are evaluated in emission order, the others in end order (fine print 5).
    const transition = (g.decisions[m] as DecisionMachine).evaluate(logic, w.end, env, !this.isCount);
    if (transition !== null) out.push(decisionRecord(rule.id, g.key, transition, w.end, values));
  }

  /** A member's values out of the family's: its outputs, then the count (the decision environment). */
  private valuesOf(member: Member, all: readonly number[]): number[] {
    const n = member.rule.plan.aliases.length;
    const values = new Array<number>(n + 1);
    for (let j = 0; j < n; j++) values[j] = all[member.offset + j] as number;
    values[n] = all[all.length - 1] as number;
    return values;
  }

  private groupOf(r: Reading, d: DeviceClock): Group {
    if (this.byDeviceOnly) {
      const known = d.ownGroup;
      if (known !== null) return known as Group;
      if (d.ownRest !== null) return this.reviveOwn(d);
      const g = this.groupFor([r.device]);
      d.ownGroup = g;
      g.owner = d;
      return g;
    }
    const groupBy = this.rule.groupBy;
    if (groupBy.length === 1) {
      // One field: its value is the map key (groupFor's), found without building the key's list.
      const f = groupBy[0] as string;
      const v = f === 'device' ? r.device : f === 'metric' ? r.metric : (r.tags?.[f] ?? null);
      return this.groups.get(v) ?? this.groupFor([v]);
    }
    const values: KeyValue[] = new Array(groupBy.length);
    for (let i = 0; i < groupBy.length; i++) {
      const f = groupBy[i] as string;
      values[i] = f === 'device' ? r.device : f === 'metric' ? r.metric : (r.tags?.[f] ?? null);
    }
    return this.groupFor(values);
  }

  private groupFor(values: readonly KeyValue[]): Group {
    const mapKey: unknown =
      values.length === 0 ? '' : values.length === 1 ? (values[0] as KeyValue) : JSON.stringify(values);
    const g = this.groups.get(mapKey);
    if (g !== undefined) return g;
    const t = this.rested.size > 0 ? this.rested.get(mapKey) : undefined;
    return t !== undefined ? this.revive(t) : this.newGroup(mapKey, values);
  }

  private newGroup(mapKey: unknown, values: readonly KeyValue[]): Group {
    const g = new Group(values, this.keyOf(values), this.newOperator(), this.decides);
    this.groups.set(mapKey, g);
    return g;
  }

  private keyOf(values: readonly KeyValue[]): GroupKey {
    const key: Record<string, string | null> = {};
    this.rule.groupBy.forEach((f, i) => {
      Object.defineProperty(key, f, { value: values[i], enumerable: true, writable: false });
    });
    return Object.freeze(key);
  }

  private newOperator(): WindowOperator {
    const rule = this.rule;
    const w = rule.window;
    switch (w.type) {
      case 'tumbling':
      case 'sliding':
        return this.alignedOperator(this.assigner as AlignedAssigner, this.plan, rule.lateness);
      case 'session':
        return new SessionWindowOperator(w.gap, this.plan, rule.lateness);
      case 'count':
        return new CountWindowOperator(w.size, w.slide ?? w.size, this.plan);
    }
  }
}
