/**
 * One rule at run time: its device clocks, its groups (each with a watermark, a window operator and
 * a decision state machine), and the ordering of what it emits (fine print 12): for each reading,
 * late re-emissions (and the `late` side output) first, then the windows the watermark closed in
 * (end, start, key) order, each decision right after its result.
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
import type { AggregationPlan } from './aggregates.js';
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
  readonly decision: DecisionMachine | null;
  /** With groupBy [device]: the device whose `ownGroup` this is. */
  owner: DeviceClock | null = null;
  /** Wall-clock time of its last reading (count windows, which have no device clocks in the group). */
  placedAt = 0;

  constructor(
    readonly keyValues: readonly KeyValue[],
    readonly key: GroupKey,
    readonly operator: WindowOperator,
    withDecision: boolean,
  ) {
    super();
    this.decision = withDecision ? new DecisionMachine() : null;
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
  /** The decision machine's state, or null when it is the initial one (or the rule has none). */
  state: DecisionState | null;
  streak: number;
  lastEnd: number;
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

export class RuleRunner {
  readonly id: string;
  private readonly groups = new Map<unknown, Group>();
  private readonly isCount: boolean;
  /** groupBy is exactly [device]: the group is found from the device clock, no key computed. */
  private readonly byDeviceOnly: boolean;
  private readonly policy: IdlePolicy;
  private readonly fired: FiredWindow[] = [];
  private readonly closed: FiredInGroup[] = [];
  private readonly touched: Group[] = [];
  /** Groups whose decision machine evaluated a window since takeChangedDecisionStates(). */
  private readonly changedStates = new Set<Group>();
  private readonly assigner: AlignedAssigner | null;
  /** Groups forgotten while idle, by map key (see restIdle). */
  private readonly rested = new Map<unknown, RestedGroup>();
  /** Forgotten groups kept by their device (groupBy [device]: no map entry needed). */
  private ownRested = 0;
  /** Wall-clock time of the last tick: idle groups' watermarks have followed it. */
  private lastTick = Number.NEGATIVE_INFINITY;

  constructor(
    readonly rule: CompiledRule,
    /** Its slot in the per-device clock arrays; a removed rule's slot is reused by the next rule added. */
    readonly slot: number,
    private readonly live: boolean,
    private readonly forgetIdle = true,
    private readonly alignedOperator: AlignedOperatorFactory = slicedWindows,
  ) {
    this.id = rule.id;
    this.isCount = rule.window.type === 'count';
    this.byDeviceOnly = rule.groupBy.length === 1 && rule.groupBy[0] === 'device';
    this.policy = { maxOutOfOrder: rule.maxOutOfOrder, idleTimeout: live ? rule.idleTimeout : null, now: 0 };
    const w = rule.window;
    this.assigner = w.type === 'tumbling' || w.type === 'sliding' ? new AlignedAssigner(w) : null;
  }

  /**
   * One reading that passed the rule's match and where (fine print 1). `d` is the reading device's
   * clock in this rule; the engine keeps it so that the device is looked up once per reading.
   */
  process(r: Reading, d: DeviceClock, seq: number, now: number, out: OutputRecord[]): void {
    const fired = this.fired;
    if (this.isCount) {
      const g = this.groupOf(r, d);
      g.placedAt = now;
      g.operator.place(r.metric, r.value, r.ts, seq, 0, fired);
      this.emit(g, fired, out, false);
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
    if (placement === Placement.Late) out.push(lateRecord(this.id, r));
    else if (fired.length > 0) this.emit(g, fired, out, true);
    // 5. Windows the watermark closed, in (end, start, key) order.
    if (touched.length > 0) {
      this.closeTouched(out);
      clear(touched);
    }
  }

  /** Live mode: re-evaluates every group's watermark with idleness at `now`. */
  tick(now: number, out: OutputRecord[]): void {
    this.lastTick = now;
    if (!this.isCount) {
      this.policy.now = now;
      for (const g of this.groups.values()) if (g.recompute(this.policy)) this.touched.push(g);
      if (this.touched.length > 0) {
        this.closeTouched(out);
        clear(this.touched);
      }
    }
    this.restIdle(now);
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
    const m = g.decision;
    const initial =
      m === null || (m.state === 'ok' && m.streak === 0 && m.lastEnd === Number.NEGATIVE_INFINITY);
    // A count group in its initial state is a new group: nothing to keep.
    if (this.isCount && initial) return;
    // Count windows: no feeders; with groupBy [device] the owner keeps what is left (none yet for a
    // group restored from persisted decision state and never fed).
    const feeder = this.isCount ? g.owner : (g.devices[0] as DeviceClock);
    const onDevice = this.byDeviceOnly && feeder !== null;
    const t: RestedGroup = {
      mapKey,
      keyValues: onDevice ? null : g.keyValues,
      feeder,
      watermark: g.watermark,
      state: initial ? null : (m as DecisionMachine).state,
      streak: m?.streak ?? 0,
      lastEnd: m?.lastEnd ?? Number.NEGATIVE_INFINITY,
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
    if (t.state !== null) g.decision?.restore({ state: t.state, streak: t.streak, lastEnd: t.lastEnd });
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

  /** End of bounded input: every watermark to +∞. */
  flush(out: OutputRecord[]): void {
    if (this.isCount) return;
    for (const g of this.groups.values()) if (g.raiseTo(Number.POSITIVE_INFINITY)) this.touched.push(g);
    this.closeTouched(out);
    clear(this.touched);
  }

  /**
   * The decision state of every group that has left the initial one; `clocks` are this rule's device
   * clocks (the engine keeps them), which hold what is left of forgotten groups with groupBy [device].
   */
  decisionStates(clocks: Iterable<DeviceClock | undefined> = []): DecisionStateRecord[] {
    const states: DecisionStateRecord[] = [];
    for (const g of this.groups.values()) {
      const m = g.decision;
      if (m === null || (m.lastEnd === Number.NEGATIVE_INFINITY && m.state === 'ok' && m.streak === 0))
        continue;
      states.push(this.stateOf(g, m));
    }
    const forgotten: RestedGroup[] = [...this.rested.values()];
    for (const d of clocks) if (d?.ownRest) forgotten.push(d.ownRest as RestedGroup);
    for (const t of forgotten) {
      if (t.state === null) continue;
      const values = t.keyValues ?? [(t.feeder as DeviceClock).name];
      states.push({
        rule: this.id,
        key: this.keyOf(values),
        state: t.state,
        streak: t.streak,
        lastEnd: t.lastEnd === Number.NEGATIVE_INFINITY ? null : t.lastEnd,
      });
    }
    return states;
  }

  /** The decision states evaluated since the last call (what must be persisted again), appended to `into`. */
  takeChangedDecisionStates(into: DecisionStateRecord[]): void {
    for (const g of this.changedStates) into.push(this.stateOf(g, g.decision as DecisionMachine));
    this.changedStates.clear();
  }

  private stateOf(g: Group, m: DecisionMachine): DecisionStateRecord {
    return {
      rule: this.id,
      key: g.key,
      state: m.state,
      streak: m.streak,
      lastEnd: m.lastEnd === Number.NEGATIVE_INFINITY ? null : m.lastEnd,
    };
  }

  restoreDecisionState(s: DecisionStateRecord): void {
    if (this.rule.decision === null || typeof s.key !== 'object' || s.key === null) return;
    const values = this.rule.groupBy.map((f) => {
      const v = (s.key as Record<string, unknown>)[f];
      return typeof v === 'string' ? v : null;
    });
    const g = this.groupFor(values);
    g.decision?.restore(s);
  }

  private closeTouched(out: OutputRecord[]): void {
    const closed = this.closed;
    const fired = this.fired;
    const touched = this.touched;
    if (touched.length === 1) {
      // One group: its windows come in (end, start) order already.
      const g = touched[0] as Group;
      g.operator.advance(g.watermark, fired);
      this.emit(g, fired, out, true);
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
      this.emitOne(c.group, c.window, out, true);
    }
    clear(closed);
  }

  private emit(g: Group, fired: FiredWindow[], out: OutputRecord[], inEndOrder: boolean): void {
    for (let i = 0; i < fired.length; i++) this.emitOne(g, fired[i] as FiredWindow, out, inEndOrder);
    clear(fired);
  }

  private emitOne(g: Group, w: FiredWindow, out: OutputRecord[], inEndOrder: boolean): void {
    const rule = this.rule;
    const values = valuesObject(rule.plan.aliases, w.values);
    out.push(resultRecord(this.id, g.key, w.start, w.end, w.count, values, w.revision));
    const logic = rule.decision;
    if (logic === null || w.revision !== 0) return;
    const transition = (g.decision as DecisionMachine).evaluate(logic, w.end, w.values, inEndOrder);
    this.changedStates.add(g);
    if (transition !== null) out.push(decisionRecord(this.id, g.key, transition, w.end, values));
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
    const g = new Group(values, this.keyOf(values), this.newOperator(), this.rule.decision !== null);
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
        return this.alignedOperator(this.assigner as AlignedAssigner, rule.plan, rule.lateness);
      case 'session':
        return new SessionWindowOperator(w.gap, rule.plan, rule.lateness);
      case 'count':
        return new CountWindowOperator(w.size, w.slide ?? w.size, rule.plan);
    }
  }
}
