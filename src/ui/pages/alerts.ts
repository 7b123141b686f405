import { useState } from 'preact/hooks';
import {
  type Alert,
  api,
  type DecisionRecord,
  type LateRecord,
  type Page,
  query,
  type RuleView,
  V1,
} from '../api.js';
import { useRefresh, useStream } from '../connection.js';
import { key, num, time } from '../format.js';
import { html } from '../html.js';
import { byLabel, parseMetrics } from '../metrics.js';
import { Badge, LoadError, Table } from './common.js';

const HISTORY_PAGE = 100;
const LATE_PAGE = 100;
/** What `/late?device=` takes: a device id. */
const DEVICE_RE = /^[A-Za-z0-9_.:-]+$/;
const LATE_METRIC = new Set(['tidegate_late_dropped_total']);

/**
 * Alerts: the groups firing now, the decision history (by rule, state and group text; newest
 * first, paged), and the late readings: counts per rule, and the stored ones from `/late` (by rule
 * and device; newest first, paged). Decisions and late readings arrive live.
 */
export function AlertsPage() {
  const [alerts, setAlerts] = useState<Alert[] | null>(null);
  const [rules, setRules] = useState<RuleView[]>([]);
  const [rule, setRule] = useState('');
  const [state, setState] = useState('');
  const [group, setGroup] = useState('');
  const [history, setHistory] = useState<{
    items: DecisionRecord[];
    next: string | null;
    older: boolean;
  } | null>(null);
  const [lateRule, setLateRule] = useState('');
  const [lateDevice, setLateDevice] = useState('');
  const [late, setLate] = useState<{ items: LateRecord[]; next: string | null; older: boolean } | null>(null);
  const [lateCounts, setLateCounts] = useState<Map<string, number>>(new Map());
  const [error, setError] = useState<unknown>(null);

  const loadAlerts = async () => {
    try {
      setAlerts((await api<{ items: Alert[] }>(`${V1}/alerts`)).items);
      setError(null);
    } catch (err) {
      setError(err);
    }
  };
  const loadHistory = async (cursor: string | null) => {
    try {
      const page = await api<Page<DecisionRecord>>(
        `${V1}/decisions${query({ rule: rule || undefined, order: 'desc', limit: HISTORY_PAGE, cursor })}`,
      );
      setHistory({ items: page.items, next: page.next, older: cursor !== null });
    } catch (err) {
      setError(err);
    }
  };
  const device = DEVICE_RE.test(lateDevice.trim()) ? lateDevice.trim() : '';
  const loadLate = async (cursor: string | null) => {
    try {
      const page = await api<Page<LateRecord>>(
        `${V1}/late${query({ rule: lateRule || undefined, device: device || undefined, order: 'desc', limit: LATE_PAGE, cursor })}`,
      );
      setLate({ items: page.items, next: page.next, older: cursor !== null });
    } catch (err) {
      setError(err);
    }
  };
  useRefresh(() => void loadAlerts(), [], 10_000);
  useRefresh(() => void loadLate(null), [lateRule, device]);
  useRefresh(() => void loadHistory(null), [rule]);
  useRefresh(
    async () => {
      try {
        const [r, m] = await Promise.all([
          api<{ items: RuleView[] }>(`${V1}/rules`),
          api<string>('/metrics', { text: true }),
        ]);
        setRules(r.items);
        setLateCounts(byLabel(parseMetrics(m, LATE_METRIC), 'tidegate_late_dropped_total', 'rule'));
      } catch {
        // Shown by the other loads.
      }
    },
    [],
    5000,
  );
  useStream('?type=decision,late', (type, data) => {
    if (type === 'decision') {
      const d = data as DecisionRecord;
      void loadAlerts();
      setHistory((h) =>
        h && !h.older && (rule === '' || d.rule === rule)
          ? { ...h, items: [d, ...h.items].slice(0, HISTORY_PAGE) }
          : h,
      );
    } else if (type === 'late') {
      const l = data as LateRecord;
      setLate((h) =>
        h &&
        !h.older &&
        (lateRule === '' || l.rule === lateRule) &&
        (device === '' || l.reading.device === device)
          ? { ...h, items: [l, ...h.items].slice(0, LATE_PAGE) }
          : h,
      );
    }
  });

  const needle = group.trim().toLowerCase();
  const shown = (history?.items ?? []).filter(
    (d) =>
      (state === '' || d.state === state) && (needle === '' || key(d.key).toLowerCase().includes(needle)),
  );

  return html`<section aria-labelledby="alerts-title">
    <h1 id="alerts-title">Alerts</h1>
    <${LoadError} error=${error} />
    <h2>Firing now</h2>
    <${Table}
      label="Firing now"
      head=${['Rule', 'Group', 'Since', 'Values']}
      rowCount=${alerts?.length ?? 0}
      empty=${alerts ? 'Nothing is firing.' : 'Loading…'}
      rows=${(alerts ?? []).map(
        (a) => html`<tr data-rule=${a.rule}>
          <td><a href=${`/rules/${encodeURIComponent(a.rule)}`}>${a.rule}</a></td><td>${key(a.key)}</td>
          <td>${time(a.since)}</td><td class="wrap">${Object.entries(a.values)
            .map(([k, v]) => `${k} ${num(v)}`)
            .join(', ')}</td>
        </tr>`,
      )}
    />
    <h2>Decision history</h2>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()} aria-label="Filter decisions">
      <label>Rule
        <select value=${rule} onChange=${(e: Event) => setRule((e.target as HTMLSelectElement).value)}>
          <option value="">any</option>
          ${rules.map((r) => html`<option value=${r.id}>${r.id}</option>`)}
        </select>
      </label>
      <label>State
        <select value=${state} onChange=${(e: Event) => setState((e.target as HTMLSelectElement).value)}>
          <option value="">any</option><option value="firing">firing</option><option value="ok">ok</option>
        </select>
      </label>
      <label>Group <input type="search" value=${group} placeholder="device=…" onInput=${(e: Event) => setGroup((e.target as HTMLInputElement).value)} /></label>
    </form>
    <${Table}
      label="Decision history"
      head=${['Time', 'Rule', 'Group', 'State', 'Values']}
      rowCount=${shown.length}
      empty=${history ? 'No decisions.' : 'Loading…'}
      rows=${shown.map(
        (d) => html`<tr>
          <td>${time(d.at)}</td><td><a href=${`/rules/${encodeURIComponent(d.rule)}`}>${d.rule}</a></td><td>${key(d.key)}</td>
          <td><${Badge} state=${d.state} /></td><td class="wrap">${Object.entries(d.values)
            .map(([k, v]) => `${k} ${num(v)}`)
            .join(', ')}</td>
        </tr>`,
      )}
    />
    <nav class="pager" aria-label="Decision history pages">
      <button type="button" disabled=${!history?.older} onClick=${() => void loadHistory(null)}>Newest</button>
      <button type="button" disabled=${!history?.next} onClick=${() => void loadHistory(history?.next ?? null)}>Older</button>
    </nav>
    <h2>Late readings</h2>
    <p>Dropped as late since the gateway started:
      ${lateCounts.size === 0 ? ' none.' : [...lateCounts].map(([r, n]) => html` <span class="pill">${r} ${num(n)}</span>`)}</p>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()} aria-label="Filter late readings">
      <label>Rule
        <select value=${lateRule} onChange=${(e: Event) => setLateRule((e.target as HTMLSelectElement).value)}>
          <option value="">any</option>
          ${rules.map((r) => html`<option value=${r.id}>${r.id}</option>`)}
        </select>
      </label>
      <label>Device <input type="search" value=${lateDevice} placeholder="device id" onChange=${(e: Event) => setLateDevice((e.target as HTMLInputElement).value)} /></label>
    </form>
    <${Table}
      label="Late readings"
      head=${['Rule', 'Device', 'Metric', 'Reading time', 'Value']}
      rowCount=${late?.items.length ?? 0}
      empty=${late ? 'No late readings stored.' : 'Loading…'}
      rows=${(late?.items ?? []).map(
        (l) =>
          html`<tr data-late-rule=${l.rule}><td>${l.rule}</td><td>${l.reading.device}</td><td>${l.reading.metric}</td><td>${time(l.reading.ts)}</td><td class="num">${num(l.reading.value)}</td></tr>`,
      )}
    />
    <nav class="pager" aria-label="Late reading pages">
      <button type="button" disabled=${!late?.older} onClick=${() => void loadLate(null)}>Newest</button>
      <button type="button" disabled=${!late?.next} onClick=${() => void loadLate(late?.next ?? null)}>Older</button>
    </nav>
  </section>`;
}
