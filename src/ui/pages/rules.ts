import { useEffect, useState } from 'preact/hooks';
import { type Alert, ApiError, api, type Page, query, type ResultRecord, type RuleView, V1 } from '../api.js';
import { stream, streamOpens, useRefresh, useStream } from '../connection.js';
import { key, num, time } from '../format.js';
import { html } from '../html.js';
import { Badge, LoadError, Table } from './common.js';

/** What `/stream` says of a rule change (`event: rule`). */
export interface RuleEvent {
  id: string;
  change: 'created' | 'replaced' | 'deleted';
  origin: 'config' | 'api';
}

export function windowText(spec: Record<string, unknown>): string {
  const w = spec['window'] as Record<string, unknown> | undefined;
  if (!w || typeof w !== 'object') return '–';
  const parts = [String(w['type'] ?? '?')];
  for (const f of ['size', 'slide', 'gap']) if (w[f] !== undefined) parts.push(`${f} ${String(w[f])}`);
  return parts.join(' · ');
}

/**
 * Keeps the rules list in step with the gateway, for the list and the editor: fetched at start, on
 * every (re)open of the stream and after an outage, and changed in place by the stream's `rule`
 * events (the page puts `rule` in its stream query and hands them to `onRule`). No polling.
 */
export function useRules(): {
  rules: RuleView[] | null;
  error: unknown;
  /** The list was read after the stream now open opened: no rule change can be missing from it. */
  synced: boolean;
  reload: () => Promise<void>;
  onRule: (event: RuleEvent) => void;
} {
  const [rules, setRules] = useState<RuleView[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [synced, setSynced] = useState(false);
  const reload = async () => {
    const opens = streamOpens.value;
    const afterOpen = stream.isOpen;
    try {
      setRules((await api<{ items: RuleView[] }>(`${V1}/rules`)).items);
      setError(null);
      if (afterOpen && opens === streamOpens.value) setSynced(true);
    } catch (err) {
      setError(err);
    }
  };
  useRefresh(() => void reload(), []);
  useEffect(
    () =>
      streamOpens.subscribe(() => {
        setSynced(false);
        void reload();
      }),
    [],
  );
  const drop = (id: string) => setRules((prev) => (prev === null ? null : prev.filter((r) => r.id !== id)));
  const onRule = (event: RuleEvent) => {
    if (event.change === 'deleted') {
      drop(event.id);
      return;
    }
    void (async () => {
      try {
        const rule = await api<RuleView>(`${V1}/rules/${encodeURIComponent(event.id)}`);
        setRules((prev) => {
          if (prev === null) return prev;
          const i = prev.findIndex((r) => r.id === rule.id);
          // A new API rule runs after the others: it goes at the end, as /rules lists it.
          if (i < 0) return [...prev, rule];
          const next = prev.slice();
          next[i] = rule;
          return next;
        });
      } catch (err) {
        // Deleted meanwhile (its event follows), or the gateway is away (the resync fetches all).
        if (err instanceof ApiError && err.status === 404) drop(event.id);
      }
    })();
  };
  return { rules, error, synced, reload, onRule };
}

/**
 * The rules: origin, window, last result and the groups firing, kept current by the stream's rule
 * changes, results and decisions; a rule opens in the editor (config rules read-only).
 */
export function RulesPage() {
  const { rules, error, synced, onRule } = useRules();
  const [alerts, setAlerts] = useState<Alert[]>([]);
  const [last, setLast] = useState<Map<string, ResultRecord>>(new Map());
  const ids = (rules ?? []).map((r) => r.id).join(',');

  const loadAlerts = async () => {
    try {
      setAlerts((await api<{ items: Alert[] }>(`${V1}/alerts`)).items);
    } catch {
      // The banner or the list's error tells.
    }
  };
  useRefresh(() => void loadAlerts(), [], 10_000);
  useRefresh(async () => {
    if (!ids) return;
    const found = new Map<string, ResultRecord>();
    await Promise.all(
      ids.split(',').map(async (id) => {
        try {
          const page = await api<Page<ResultRecord>>(
            `${V1}/results${query({ rule: id, order: 'desc', limit: 1 })}`,
          );
          if (page.items[0]) found.set(id, page.items[0]);
        } catch {
          // As above.
        }
      }),
    );
    setLast((prev) => {
      const next = new Map(prev);
      for (const [id, r] of found) {
        const old = next.get(id);
        if (!old || Date.parse(old.end) <= Date.parse(r.end)) next.set(id, r);
      }
      return next;
    });
  }, [ids]);
  useStream('?type=result,decision,rule', (type, data) => {
    if (type === 'rule') onRule(data as RuleEvent);
    if (type === 'decision') void loadAlerts();
    if (type !== 'result') return;
    const r = data as ResultRecord;
    setLast((prev) => {
      const old = prev.get(r.rule);
      if (old && Date.parse(old.end) > Date.parse(r.end)) return prev;
      const next = new Map(prev);
      next.set(r.rule, r);
      return next;
    });
  });

  const firing = new Map<string, number>();
  for (const a of alerts) firing.set(a.rule, (firing.get(a.rule) ?? 0) + 1);

  return html`<section aria-labelledby="rules-title" data-synced=${synced ? 'true' : 'false'}>
    <div class="title-row">
      <h1 id="rules-title">Rules</h1>
      <a class="button" href="/rules/new">New rule</a>
    </div>
    <${LoadError} error=${error} />
    <${Table}
      label="Rules"
      head=${['Rule', 'Origin', 'Window', 'Last result', 'Firing']}
      rowCount=${rules?.length ?? 0}
      empty=${rules ? 'No rules yet: make one with New rule.' : 'Loading…'}
      rows=${(rules ?? []).map((r) => {
        const res = last.get(r.id);
        const n = firing.get(r.id) ?? 0;
        return html`<tr key=${r.id} data-rule=${r.id}>
          <td class="id"><a href=${`/rules/${encodeURIComponent(r.id)}`}>${r.id}</a>${r.spec['description'] ? html`<br /><small>${String(r.spec['description'])}</small>` : null}</td>
          <td>${r.origin === 'config' ? 'config file' : 'API'}</td>
          <td>${windowText(r.spec)}</td>
          <td class="wrap">${
            res
              ? html`${time(res.end)}: ${key(res.key)} · ${Object.entries(res.values)
                  .slice(0, 3)
                  .map(([k, v]) => `${k} ${num(v)}`)
                  .join(', ')}`
              : '–'
          }</td>
          <td>${n > 0 ? html`<${Badge} state="firing" text=${`${n} firing`} />` : '–'}</td>
        </tr>`;
      })}
    />
  </section>`;
}
