import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { isNode, LineCounter, parseDocument, stringify } from 'yaml';
import {
  ApiError,
  api,
  type BacktestJob,
  type DecisionRecord,
  type Page,
  query,
  type ResultRecord,
  type RuleView,
  serverNow,
  V1,
} from '../api.js';
import { Chart, type ChartData, type Mark } from '../chart.js';
import { useStream } from '../connection.js';
import { fromLocalInput, key as keyText, localInput, num, RANGES, time } from '../format.js';
import { html } from '../html.js';
import { navigate } from '../router.js';
import { LoadError } from './common.js';
import { type RuleEvent, useRules } from './rules.js';

const TEMPLATE = `# A rule (docs/SPEC.md §2), in YAML or JSON.
id: my-rule
description: Average temperature per device each minute
match: { device: "*", metric: temperature }
window: { type: tumbling, size: 1m }
aggregates: { avg: avg, peak: max }
when: "avg > 30"
clear: "avg < 28"
`;

/** A rule copied from a config rule into a new one ("Copy to a new rule"). */
let draft: string | null = null;

/** Records of a backtest read for its chart, at most (the job keeps 100,000). */
const MAX_RECORDS = 100_000;
/** Groups drawn on the backtest chart, those with the most results. */
const MAX_GROUPS = 8;
const POLL_MS = 250;

export interface Problem {
  path: string;
  message: string;
  line?: number;
}

interface Parsed {
  spec: Record<string, unknown> | null;
  problems: Problem[];
  locate: (path: string) => number | undefined;
}

/** The editor's text as a rule: YAML (JSON is YAML too), one rule (a mapping). */
export function parseRule(text: string): Parsed {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const locate = (path: string): number | undefined => {
    const segments = path === '' ? [] : path.split('.').map((s) => (/^\d+$/.test(s) ? Number(s) : s));
    for (let n = segments.length; n >= 0; n--) {
      const node = n === 0 ? doc.contents : doc.getIn(segments.slice(0, n), true);
      if (isNode(node) && node.range) return lines.linePos(node.range[0]).line;
    }
    return undefined;
  };
  if (doc.errors.length > 0) {
    return {
      spec: null,
      locate,
      problems: doc.errors.map((e) => ({
        path: '(YAML)',
        message: e.message.split('\n')[0] ?? e.message,
        ...(e.linePos?.[0] ? { line: e.linePos[0].line } : {}),
      })),
    };
  }
  const value = doc.toJS() as unknown;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return {
      spec: null,
      locate,
      problems: [{ path: '(rule)', message: 'expected one rule: a mapping with id, window, …' }],
    };
  }
  return { spec: value as Record<string, unknown>, problems: [], locate };
}

type Outcome =
  | { kind: 'none' }
  | { kind: 'valid' }
  | { kind: 'problems'; problems: Problem[]; title: string }
  | { kind: 'message'; text: string; error?: boolean };

interface BacktestView {
  job: BacktestJob;
  chart: ChartData | null;
  marks: Mark[];
  alias: string;
  groups: number;
  shownGroups: number;
  recordsRead: number;
}

/**
 * The rule editor: a new rule, an API rule (Save replaces it, Delete deletes it) or a config-file
 * rule (read-only). Validate lists every problem at its path (and line); Backtest runs the text
 * over a chosen range of stored readings and draws its results, marks its decisions' transitions
 * and says how often it would have fired; Save applies it at once.
 */
export function RulePage(props: { id: string | null }) {
  const { rules, error: listError, onRule } = useRules();
  // Changes made elsewhere (another tab, the API) show at once: this rule's, or any for a new one.
  useStream(
    props.id === null ? '?type=rule' : `?type=rule&rule=${encodeURIComponent(props.id)}`,
    (type, data) => {
      if (type === 'rule') onRule(data as RuleEvent);
    },
  );
  const existing: RuleView | undefined =
    props.id === null ? undefined : rules?.find((r) => r.id === props.id);
  const readOnly = existing?.origin === 'config';
  const [text, setText] = useState<string | null>(props.id === null ? (draft ?? TEMPLATE) : null);
  const [loadedAt, setLoadedAt] = useState<string | undefined>(undefined);
  /** The text as the gateway last gave it: what "edited" is measured against. */
  const [base, setBase] = useState<string | null>(null);
  const [outcome, setOutcome] = useState<Outcome>({ kind: 'none' });
  const [busy, setBusy] = useState<string | null>(null);
  const [range, setRange] = useState('24h');
  const [custom, setCustom] = useState<{ from: string; to: string }>(() => ({
    from: localInput(serverNow() - 86_400_000),
    to: localInput(serverNow()),
  }));
  const [backtest, setBacktest] = useState<BacktestView | null>(null);
  const running = useRef<string | null>(null);
  const area = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    if (props.id === null) draft = null;
  }, []);

  // The text follows the rule as the gateway has it, until the user edits it.
  const dirty = text !== null && base !== null && text !== base;
  const changedElsewhere =
    existing !== undefined && loadedAt !== undefined && (existing.updatedAt ?? '') !== loadedAt;
  useEffect(() => {
    if (existing && (text === null || (changedElsewhere && !dirty))) {
      const fresh = stringify(existing.spec);
      setText(fresh);
      setBase(fresh);
      setLoadedAt(existing.updatedAt ?? '');
    }
  }, [existing?.updatedAt, existing !== undefined]);

  // A backtest this page started is cancelled when the page is left.
  useEffect(
    () => () => {
      if (running.current)
        void api(`${V1}/backtests/${running.current}`, { method: 'DELETE' }).catch(() => {});
    },
    [],
  );

  const parsed = useMemo(() => parseRule(text ?? ''), [text]);
  const withLines = (problems: { path?: string; message: string }[]): Problem[] =>
    problems.map((p) => {
      const line = parsed.locate(p.path ?? '');
      return { path: p.path ?? '(rule)', message: p.message, ...(line !== undefined ? { line } : {}) };
    });
  const specOrProblems = (): Record<string, unknown> | null => {
    if (parsed.spec) return parsed.spec;
    setOutcome({ kind: 'problems', title: 'The text is not a rule', problems: parsed.problems });
    return null;
  };
  const fail = (err: unknown, title: string) => {
    if (err instanceof ApiError && err.details.length > 0 && (err.status === 422 || err.status === 400))
      setOutcome({ kind: 'problems', title, problems: withLines(err.details) });
    else setOutcome({ kind: 'message', text: `${title}: ${(err as Error).message}`, error: true });
  };

  const validate = async () => {
    const spec = specOrProblems();
    if (!spec) return;
    setBusy('validate');
    try {
      await api(`${V1}/rules/validate`, { method: 'POST', body: spec });
      setOutcome({ kind: 'valid' });
    } catch (err) {
      fail(err, 'The rule is not valid');
    } finally {
      setBusy(null);
    }
  };

  const save = async () => {
    const spec = specOrProblems();
    if (!spec) return;
    const id = typeof spec['id'] === 'string' ? spec['id'] : '';
    setBusy('save');
    try {
      const replace = existing !== undefined && existing.origin === 'api' && id === existing.id;
      const saved = await api<RuleView>(replace ? `${V1}/rules/${encodeURIComponent(id)}` : `${V1}/rules`, {
        method: replace ? 'PUT' : 'POST',
        body: spec,
      });
      setOutcome({ kind: 'message', text: `Saved: ${saved.id} runs from now on.` });
      setLoadedAt(saved.updatedAt ?? '');
      if (saved.id !== props.id) navigate(`/rules/${encodeURIComponent(saved.id)}`);
    } catch (err) {
      fail(err, 'Not saved');
    } finally {
      setBusy(null);
    }
  };

  const remove = async () => {
    if (existing?.origin !== 'api') return;
    if (!window.confirm(`Delete the rule ${existing.id}? Its windows and decision state go with it.`)) return;
    setBusy('delete');
    try {
      await api(`${V1}/rules/${encodeURIComponent(existing.id)}`, { method: 'DELETE' });
      navigate('/rules');
    } catch (err) {
      fail(err, 'Not deleted');
      setBusy(null);
    }
  };

  const rangeBounds = (): { from: number; to: number } | null => {
    if (range !== 'custom') {
      const to = serverNow();
      return { from: to - (RANGES[range] as number), to };
    }
    const from = fromLocalInput(custom.from);
    const to = fromLocalInput(custom.to);
    return from !== null && to !== null && from < to ? { from, to } : null;
  };

  const runBacktest = async () => {
    const spec = specOrProblems();
    if (!spec) return;
    const bounds = rangeBounds();
    if (!bounds) {
      setOutcome({ kind: 'message', text: 'Choose a range whose start is before its end.', error: true });
      return;
    }
    setBusy('backtest');
    setBacktest(null);
    setOutcome({ kind: 'none' });
    try {
      let job = await api<BacktestJob>(`${V1}/backtests`, {
        method: 'POST',
        body: {
          rule: spec,
          from: new Date(bounds.from).toISOString(),
          to: new Date(bounds.to).toISOString(),
        },
      });
      running.current = job.id;
      while (job.state === 'running') {
        setBacktest({ job, chart: null, marks: [], alias: '', groups: 0, shownGroups: 0, recordsRead: 0 });
        await new Promise((r) => setTimeout(r, POLL_MS));
        job = await api<BacktestJob>(`${V1}/backtests/${job.id}`);
      }
      running.current = null;
      if (job.state !== 'done') {
        setBacktest(null);
        setOutcome({ kind: 'message', text: `The backtest ${job.state}: ${job.error ?? ''}`, error: true });
        return;
      }
      setBacktest(await backtestView(job, spec));
    } catch (err) {
      running.current = null;
      if (err instanceof ApiError && err.status === 409) {
        const other = err.details.find((d) => d.path === 'running')?.message;
        setOutcome({
          kind: 'message',
          error: true,
          text: `Another backtest is running${other ? ` (${other})` : ''}: wait for it, or run this one when it ends.`,
        });
      } else fail(err, 'The backtest could not run');
    } finally {
      setBusy(null);
    }
  };

  const copy = () => {
    draft = `${stringify({ ...(existing?.spec ?? {}), id: `${existing?.id ?? 'rule'}-copy` })}`;
    navigate('/rules/new');
  };

  if (props.id !== null && rules !== null && existing === undefined) {
    return html`<section>
      <h1>Rule ${props.id}</h1>
      <p>There is no rule ${props.id} (deleted through the API?). <a href="/rules">All rules</a> · <a href="/rules/new">New rule</a></p>
    </section>`;
  }
  const title = props.id === null ? 'New rule' : `Rule ${props.id}`;
  return html`<section aria-labelledby="rule-title">
    <h1 id="rule-title">${title}</h1>
    <${LoadError} error=${listError} />
    ${
      readOnly
        ? html`<p class="note" role="note">This rule comes from the gateway’s configuration file: it is read-only here. Change it in the file and restart the gateway, or <button type="button" class="link" onClick=${copy}>copy it to a new rule</button>. It can be backtested as it is.</p>`
        : null
    }
    ${
      changedElsewhere && dirty
        ? html`<p class="note" role="status">This rule was changed through the API since you opened it. Saving replaces that change.</p>`
        : null
    }
    <label for="rule-text">Rule</label>
    <textarea
      id="rule-text"
      ref=${area}
      spellcheck=${false}
      autocapitalize="off"
      rows=${14}
      readOnly=${readOnly}
      value=${text ?? ''}
      onInput=${(e: Event) => setText((e.target as HTMLTextAreaElement).value)}
      aria-describedby="rule-outcome"
    ></textarea>
    <div class="actions">
      <button type="button" onClick=${validate} disabled=${busy !== null || text === null}>Validate</button>
      ${readOnly ? null : html`<button type="button" class="primary" onClick=${save} disabled=${busy !== null || text === null}>Save</button>`}
      ${existing?.origin === 'api' ? html`<button type="button" class="danger" onClick=${remove} disabled=${busy !== null}>Delete</button>` : null}
    </div>
    <div id="rule-outcome" aria-live="polite"><${OutcomeView} outcome=${outcome} /></div>
    <h2>Backtest</h2>
    <div class="range" role="group" aria-label="Backtest range">
      <label>Range
        <select value=${range} onChange=${(e: Event) => setRange((e.target as HTMLSelectElement).value)}>
          <option value="1h">last hour</option>
          <option value="24h">last 24 hours</option>
          <option value="7d">last 7 days</option>
          <option value="custom">custom</option>
        </select>
      </label>
      ${
        range === 'custom'
          ? html`<label>From <input type="datetime-local" value=${custom.from} onInput=${(e: Event) => setCustom({ ...custom, from: (e.target as HTMLInputElement).value })} /></label>
            <label>To <input type="datetime-local" value=${custom.to} onInput=${(e: Event) => setCustom({ ...custom, to: (e.target as HTMLInputElement).value })} /></label>`
          : null
      }
      <button type="button" onClick=${runBacktest} disabled=${busy !== null || text === null}>Backtest</button>
    </div>
    <${BacktestResult} view=${backtest} ruleId=${parsed.spec?.['id'] ?? props.id ?? 'rule'} />
  </section>`;
}

function OutcomeView(props: { outcome: Outcome }) {
  const o = props.outcome;
  switch (o.kind) {
    case 'none':
      return null;
    case 'valid':
      return html`<p class="ok" role="status">Valid: the gateway accepts this rule.</p>`;
    case 'message':
      return html`<p class=${o.error ? 'error' : 'ok'} role=${o.error ? 'alert' : 'status'}>${o.text}</p>`;
    case 'problems':
      return html`<div class="problems" role="alert">
        <p class="error">${o.title}: ${o.problems.length} problem${o.problems.length === 1 ? '' : 's'}</p>
        <ul>
          ${o.problems.map(
            (p) =>
              html`<li data-path=${p.path}><code class="path">${p.path}</code>${p.line !== undefined ? html` <small>(line ${p.line})</small>` : null}: ${p.message}</li>`,
          )}
        </ul>
      </div>`;
  }
}

/** Reads a finished job's records and turns them into the chart's series and marks. */
async function backtestView(job: BacktestJob, spec: Record<string, unknown>): Promise<BacktestView> {
  const results: ResultRecord[] = [];
  const decisions: DecisionRecord[] = [];
  let cursor: string | null = null;
  let read = 0;
  do {
    const page: Page<ResultRecord | DecisionRecord> = await api<Page<ResultRecord | DecisionRecord>>(
      `${V1}/backtests/${job.id}/records${query({ type: 'result,decision', limit: 20_000, cursor })}`,
    );
    for (const r of page.items) {
      if (r.type === 'result') {
        if (r.revision === 0) results.push(r);
      } else decisions.push(r);
    }
    read += page.items.length;
    cursor = page.next;
  } while (cursor !== null && read < MAX_RECORDS);

  const aggregates = spec['aggregates'];
  const aliases = aggregates && typeof aggregates === 'object' ? Object.keys(aggregates) : [];
  const alias = aliases[0] ?? 'count';
  const byGroup = new Map<string, ResultRecord[]>();
  for (const r of results) {
    const k = keyText(r.key);
    const list = byGroup.get(k);
    if (list) list.push(r);
    else byGroup.set(k, [r]);
  }
  const groups = [...byGroup.entries()].sort((a, b) => b[1].length - a[1].length || a[0].localeCompare(b[0]));
  const shown = groups.slice(0, MAX_GROUPS);
  const ends = [...new Set(shown.flatMap(([, list]) => list.map((r) => Date.parse(r.end))))].sort(
    (a, b) => a - b,
  );
  const index = new Map(ends.map((t, i) => [t, i]));
  const chart: ChartData = {
    x: ends.map((t) => t / 1000),
    series: shown.map(([k, list]) => {
      const values: (number | null)[] = new Array(ends.length).fill(null);
      for (const r of list) {
        const v = alias === 'count' && !(alias in r.values) ? r.count : (r.values[alias] ?? null);
        values[index.get(Date.parse(r.end)) as number] = v;
      }
      return { label: k, values };
    }),
  };
  const shownKeys = new Set(shown.map(([k]) => k));
  return {
    job,
    chart,
    marks: decisions
      .filter((d) => shownKeys.has(keyText(d.key)))
      .map((d) => ({ at: Date.parse(d.at) / 1000, state: d.state })),
    alias,
    groups: groups.length,
    shownGroups: shown.length,
    recordsRead: read,
  };
}

function BacktestResult(props: { view: BacktestView | null; ruleId: unknown }) {
  const v = props.view;
  if (!v) return null;
  const { job } = v;
  if (job.state === 'running') {
    return html`<p role="status" class="progress">Backtest running… ${Math.round(job.progress.fraction * 100)} % (${num(job.progress.readings)} readings)</p>`;
  }
  const fired = job.summary.decisions.firing;
  return html`<div class="backtest" data-backtest=${job.id}>
    <p class="summary" role="status" data-fired=${fired}>
      <strong>Would have fired ${num(fired)} time${fired === 1 ? '' : 's'}</strong>${' '}
      ${`from ${time(job.from)} to ${time(job.to)}: ${num(job.summary.readings)} readings, ${num(job.summary.windows)} windows, ${num(job.summary.decisions.ok)} cleared${job.truncated ? ' (records truncated at 100,000)' : ''}.`}
    </p>
    ${
      v.chart && v.chart.x.length > 0
        ? html`<figure>
            <figcaption>${v.alias} per window end${v.groups > v.shownGroups ? ` · the ${v.shownGroups} groups with most windows of ${v.groups}` : ''} · red lines: firing, green: cleared</figcaption>
            <${Chart} label=${`Backtest of ${String(props.ruleId)}: ${v.alias}`} data=${v.chart} marks=${v.marks} />
          </figure>`
        : html`<p>No window closed in this range.</p>`
    }
  </div>`;
}
