import { writtenRule } from '../config/rules.js';
import { type CompiledRule, compileRule } from '../engine/compile.js';
import { type RuleProblem, type RuleSpec, validateRule } from '../model/rule.js';
import { formatTimestamp } from '../model/timestamp.js';
import type { Clock } from '../runtime/clock.js';
import type { EventBus } from '../runtime/events.js';
import type { Logger } from '../runtime/log.js';
import type { RuleStore, StoredRule } from '../store/rule-store.js';

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

/** Where a change is applied at once: the running rules (`LiveRules`). */
export interface RunningRules {
  /** The ids of the running rules, in the order they run. */
  readonly ruleIds: readonly string[];
  has(id: string): boolean;
  add(rule: CompiledRule): void;
  /** Replaces the rule of the same id; returns how many of its groups were discarded. */
  replace(rule: CompiledRule): number;
  /** Removes a rule; returns how many of its groups were discarded. */
  remove(id: string): number;
}

interface RuleEntry {
  origin: 'config' | 'api';
  spec: unknown;
  createdAt: number | null;
  updatedAt: number | null;
}

/**
 * The rules service behind the API: config-file rules (read-only) and rules created through the API
 * (kept in the store), validated and compiled before anything changes, then applied to the running
 * rules at once.
 */
export class RuleCatalog {
  /** The rules at start: config rules in file order, then API rules in creation order (what the rebuild runs). */
  readonly rulesAtStart: CompiledRule[];
  private readonly entries = new Map<string, RuleEntry>();
  private running: RunningRules | null = null;

  constructor(
    configRules: readonly RuleSpec[],
    private readonly deps: {
      /** The rules created through the API. */
      store: RuleStore;
      clock: Clock;
      log: Logger;
      /** Told of every change once it applies (`rule` events, `/stream`'s `event: rule`). */
      bus?: EventBus;
    },
  ) {
    this.rulesAtStart = configRules.map(compileRule);
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
      this.rulesAtStart.push(compiled);
      this.entries.set(stored.id, {
        origin: 'api',
        spec: stored.spec,
        createdAt: stored.createdAt,
        updatedAt: stored.updatedAt,
      });
    }
  }

  /** The running rules changes are applied to (set once they exist). */
  applyTo(running: RunningRules): void {
    this.running = running;
  }

  private get target(): RunningRules {
    if (this.running === null) throw new Error('the rule catalog is not attached to running rules');
    return this.running;
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
    return this.target.ruleIds.map((id) => this.view(id, this.entries.get(id) as RuleEntry));
  }

  get(id: string): RuleView | null {
    const entry = this.entries.get(id);
    return entry && this.target.has(id) ? this.view(id, entry) : null;
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
    const groups = this.target.remove(id);
    this.entries.delete(id);
    this.deps.log.info({ rule: id, discardedGroups: groups }, 'rule deleted through the API');
    this.deps.bus?.emit('rule', { id, change: 'deleted', origin: 'api' });
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
    const groups = replacing ? this.target.replace(compiled) : 0;
    if (!replacing) this.target.add(compiled);
    this.entries.set(id, {
      origin: 'api',
      spec: stored.spec,
      createdAt: stored.createdAt,
      updatedAt: stored.updatedAt,
    });
    this.deps.log.info(
      { rule: id, discardedGroups: groups },
      replacing ? 'rule replaced through the API' : 'rule created through the API',
    );
    this.deps.bus?.emit('rule', { id, change: replacing ? 'replaced' : 'created', origin: 'api' });
    return {
      rule: this.view(id, this.entries.get(id) as RuleEntry),
      created: !replacing,
      windows: replacing ? 'discarded' : 'empty',
      discardedGroups: groups,
    };
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
