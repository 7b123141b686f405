import type { DecisionStateRecord } from '../engine/decision.js';
import type { OutputRecord } from '../model/records.js';
import type { Clock } from '../runtime/clock.js';
import type { StatementSink } from './commit-core.js';
import type { Db } from './database.js';
import { OUTBOX_APPEND_SQL, type Outbox } from './outbox.js';
import type { BatchPart } from './reading-writer.js';

const SQL = {
  result: `INSERT INTO results (rule, key, start, "end", count, "values", revision, emitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  decision: `INSERT INTO decisions (rule, key, state, at, "values", emitted_at) VALUES (?, ?, ?, ?, ?, ?)`,
  late: 'INSERT INTO late_readings (rule, device, metric, value, ts, emitted_at) VALUES (?, ?, ?, ?, ?, ?)',
  state: `INSERT INTO decision_state (rule, key, state) VALUES (?, ?, ?)
         ON CONFLICT (rule, key) DO UPDATE SET state = excluded.state`,
};

/**
 * Rule outputs (results, decisions, late readings) and the decision state, written in the same
 * group commit as the readings that caused them.
 */
export class OutputWriter implements BatchPart {
  /** `forwarded`: the record also goes into the outbox (its rule forwards its type). */
  private pending: { record: OutputRecord; at: number; forwarded: boolean }[] = [];
  private writing = 0;
  private statesDirty = false;
  /** `statesDirty` as the batch being committed took it. */
  private writingDirty = false;
  /**
   * Decision states taken from the engine and not yet committed, by rule and key: a commit that
   * rolls back writes them again with the next one (a newer state of the same group replaces it).
   * `key` is the group key as stored (JSON).
   */
  private readonly unwrittenStates = new Map<string, { state: DecisionStateRecord; key: string }>();
  constructor(
    private readonly deps: {
      clock: Clock;
      /** The decision states that changed since the last call (the engine's takeChangedDecisionStates). */
      changedDecisionStates: () => DecisionStateRecord[];
      /** Where forwarded records go, and which record types each rule forwards (SPEC §2 `forward`). */
      outbox?: { outbox: Outbox; forward: ReadonlyMap<string, ReadonlySet<string>> } | undefined;
    },
  ) {}

  /** Queues records for the next commit; true when one of them goes upstream through the outbox. */
  add(records: readonly OutputRecord[]): boolean {
    const at = this.deps.clock.now();
    const forward = this.deps.outbox?.forward;
    let forwarded = false;
    for (const record of records) {
      const goes = forward?.get(record.rule)?.has(record.type) === true;
      this.pending.push({ record, at, forwarded: goes });
      // A first result moves a decision state machine (its streak), even without a transition.
      if (record.type === 'result' && record.revision === 0) this.statesDirty = true;
      if (goes) forwarded = true;
    }
    return forwarded;
  }

  get pendingCount(): number {
    return this.pending.length + (this.statesDirty ? 1 : 0);
  }

  write(sink: StatementSink): void {
    this.writing = this.pending.length;
    this.writingDirty = this.statesDirty;
    this.statesDirty = false;
    const out = this.deps.outbox;
    for (let i = 0; i < this.writing; i++) {
      const { record: r, at, forwarded } = this.pending[i] as (typeof this.pending)[number];
      if (forwarded && out) sink.run(OUTBOX_APPEND_SQL, r.type, r.rule, JSON.stringify(r), at);
      switch (r.type) {
        case 'result':
          sink.run(
            SQL.result,
            r.rule,
            JSON.stringify(r.key),
            Date.parse(r.start),
            Date.parse(r.end),
            r.count,
            JSON.stringify(r.values),
            r.revision,
            at,
          );
          break;
        case 'decision':
          sink.run(
            SQL.decision,
            r.rule,
            JSON.stringify(r.key),
            r.state,
            Date.parse(r.at),
            JSON.stringify(r.values),
            at,
          );
          break;
        case 'late':
          sink.run(
            SQL.late,
            r.rule,
            r.reading.device,
            r.reading.metric,
            r.reading.value,
            Date.parse(r.reading.ts),
            at,
          );
          break;
      }
    }
    const states = this.unwrittenStates;
    for (const state of this.deps.changedDecisionStates()) {
      const key = JSON.stringify(state.key);
      states.set(`${state.rule}\u0000${key}`, { state, key });
    }
    for (const { state: s, key } of states.values()) {
      sink.run(
        SQL.state,
        s.rule,
        key,
        JSON.stringify({ state: s.state, streak: s.streak, lastEnd: s.lastEnd }),
      );
    }
  }

  committed(): void {
    this.pending.splice(0, this.writing);
    this.writing = 0;
    this.writingDirty = false;
    this.unwrittenStates.clear();
  }

  /** A rule was deleted or replaced: its decision states (dropped from the store) must not come back. */
  discardStates(rule: string): void {
    for (const [k, { state }] of this.unwrittenStates)
      if (state.rule === rule) this.unwrittenStates.delete(k);
  }

  rolledBack(): void {
    this.writing = 0;
    if (this.writingDirty) this.statesDirty = true;
    this.writingDirty = false;
  }
}

/** The persisted decision states, to restore into the engine at start. */
export function loadDecisionStates(db: Db): DecisionStateRecord[] {
  const rows = db.prepare('SELECT rule, key, state FROM decision_state').all() as {
    rule: string;
    key: string;
    state: string;
  }[];
  return rows.map((row) => {
    const s = JSON.parse(row.state) as Pick<DecisionStateRecord, 'state' | 'streak' | 'lastEnd'>;
    return { rule: row.rule, key: JSON.parse(row.key) as DecisionStateRecord['key'], ...s };
  });
}
