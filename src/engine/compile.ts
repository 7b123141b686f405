/**
 * Compiles a validated RuleSpec into what the engine runs per reading: name matchers, the `where`
 * closure, the aggregation plan and the decision logic. Done once per rule, never per reading.
 */
import type { RuleSpec, WindowSpec } from '../model/rule.js';
import { decisionNames, windowExtent } from '../model/rule.js';
import { AggregationPlan } from './aggregates.js';
import type { DecisionLogic } from './decision.js';
import { type ConditionFn, compileCondition } from './expression.js';
import { compileGlob, exactNames, matchAll, type NameMatcher } from './glob.js';

export interface CompiledRule {
  readonly id: string;
  readonly spec: RuleSpec;
  readonly matchDevice: NameMatcher;
  readonly matchMetric: NameMatcher;
  /** The only metric names the rule accepts, when its metric match has no wildcard; else null. */
  readonly exactMetrics: readonly string[] | null;
  /** True when `match.device` is absent or `*`: no per-reading device test. */
  readonly anyDevice: boolean;
  readonly where: ConditionFn | null;
  readonly groupBy: readonly string[];
  readonly window: WindowSpec;
  readonly maxOutOfOrder: number;
  readonly idleTimeout: number;
  readonly lateness: number;
  readonly plan: AggregationPlan;
  /** Null when the rule has no `when`: no decisions. */
  readonly decision: DecisionLogic | null;
  /** Names of the decision environment, in slot order (aliases, then `count` unless an alias took it). */
  readonly decisionNames: readonly string[];
  readonly forward: RuleSpec['forward'];
}

export function compileRule(spec: RuleSpec): CompiledRule {
  const plan = new AggregationPlan(spec.aggregates);
  const names = decisionNames(plan.aliases);
  let decision: DecisionLogic | null = null;
  if (spec.when !== null) {
    const when = compileCondition(spec.when, names);
    const clear =
      spec.clear !== null ? compileCondition(spec.clear, names) : (env: ArrayLike<number>) => !when(env);
    decision = { when, clear, for: spec.for };
  }
  const deviceMatcher = spec.match.device === null ? matchAll : compileGlob(spec.match.device);
  return {
    id: spec.id,
    spec,
    matchDevice: deviceMatcher,
    matchMetric: spec.match.metric === null ? matchAll : compileGlob(spec.match.metric),
    exactMetrics: spec.match.metric === null ? null : exactNames(spec.match.metric),
    anyDevice: deviceMatcher === matchAll,
    where: spec.where === null ? null : compileCondition(spec.where, ['value']),
    groupBy: spec.groupBy,
    window: spec.window,
    maxOutOfOrder: spec.watermark.maxOutOfOrder,
    idleTimeout: spec.watermark.idleTimeout,
    lateness: spec.lateness,
    plan,
    decision,
    decisionNames: names,
    forward: spec.forward,
  };
}

/** Compiles rules in file order. */
export function compileRules(specs: readonly RuleSpec[]): CompiledRule[] {
  return specs.map(compileRule);
}

/**
 * How much event time one of the rule's windows stays open and live: its extent, plus the
 * out-of-orderness and lateness it waits for. What the duplicate filter and the rebuild look back on.
 */
export function liveSpan(rule: CompiledRule): number {
  return windowExtent(rule.window) + rule.maxOutOfOrder + rule.lateness;
}
