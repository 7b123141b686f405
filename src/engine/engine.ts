/**
 * The rule engine (SPEC §2): pure, no I/O; time comes only from the injected Clock, and only for
 * idleness in live mode. Rules run in file order on each reading; a per-metric index of the rules
 * whose metric glob accepts the name spares a reading the rules that cannot see it.
 */
import type { Clock } from '../clock.js';
import type { Reading } from '../model/reading.js';
import type { CompiledRule } from './compile.js';
import type { DecisionStateRecord } from './decision.js';
import type { OutputRecord } from './records.js';
import { RuleRunner } from './rule-runner.js';
import { DeviceClock } from './watermark.js';

export interface EngineOptions {
  clock: Clock;
  /** false: replay/backtest, no idleness; true: the live gateway, which calls tick() periodically. */
  live: boolean;
}

/** Per device name, per rule (by index): its clock in that rule and whether the rule's device glob matches. */
interface DeviceEntry {
  clocks: (DeviceClock | undefined)[];
  /** 0 not yet tested, 1 matches, 2 does not. */
  matches: Int8Array;
}

const NOTHING: OutputRecord[] = Object.freeze([]) as unknown as OutputRecord[];
const METRIC_INDEX_LIMIT = 10_000;

export class RuleEngine {
  private readonly runners: RuleRunner[];
  private byMetric = new Map<string, RuleRunner[]>();
  private readonly devices = new Map<string, DeviceEntry>();
  private readonly valueEnv = new Float64Array(1);
  private out: OutputRecord[] = [];
  private seq = 0;

  constructor(
    rules: CompiledRule[],
    private readonly options: EngineOptions,
  ) {
    this.runners = rules.map((r, i) => new RuleRunner(r, i, options.live));
  }

  /**
   * One validated, de-duplicated reading in arrival order; returns the records it caused, in
   * fine-print-12 order. An empty result is a shared frozen array.
   */
  process(reading: Reading): OutputRecord[] {
    const seq = ++this.seq;
    const now = this.options.live ? this.options.clock.now() : 0;
    const runners = this.runnersFor(reading.metric);
    if (runners.length === 0) return NOTHING;
    let entry = this.devices.get(reading.device);
    if (entry === undefined) {
      entry = { clocks: new Array(this.runners.length), matches: new Int8Array(this.runners.length) };
      this.devices.set(reading.device, entry);
    }
    const out = this.out;
    const valueEnv = this.valueEnv;
    for (let i = 0; i < runners.length; i++) {
      const runner = runners[i] as RuleRunner;
      const k = runner.index;
      // Fine print 1: a reading that fails match or where is invisible to the rule.
      let m = entry.matches[k] as number;
      if (m === 0) {
        m = runner.rule.matchDevice(reading.device) ? 1 : 2;
        entry.matches[k] = m;
      }
      if (m === 2) continue;
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
    return this.take();
  }

  /** End of bounded input: every watermark to +∞, everything flushed (count windows: nothing partial). */
  flush(): OutputRecord[] {
    for (const r of this.runners) r.flush(this.out);
    return this.take();
  }

  /** The decision state of every (rule, group) that has one, to persist. */
  decisionStates(): DecisionStateRecord[] {
    return this.runners.flatMap((r) => r.decisionStates());
  }

  /** Restores persisted decision states; call before the first reading. Unknown rules are ignored. */
  restoreDecisionStates(states: DecisionStateRecord[]): void {
    const byId = new Map(this.runners.map((r) => [r.id, r]));
    for (const s of states) byId.get(s.rule)?.restoreDecisionState(s);
  }

  private take(): OutputRecord[] {
    const out = this.out;
    if (out.length === 0) return NOTHING;
    this.out = [];
    return out;
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
