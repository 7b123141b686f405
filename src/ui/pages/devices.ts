import { useRef, useState } from 'preact/hooks';
import { api, type DevicePage, query, serverNow, V1 } from '../api.js';
import { useRefresh } from '../connection.js';
import { duration, num } from '../format.js';
import { html } from '../html.js';
import { navigate, params } from '../router.js';
import { Badge, LoadError, Table } from './common.js';

export const PAGE_SIZE = 100;
const STATUSES = ['online', 'stale', 'offline', 'error', 'stopped'];
const LATEST_SHOWN = 4;

/**
 * Every device: a table of id, source, status with the age of its last reading, its number of
 * metrics and latest values; filtered by text and status, 100 rows a page, filtered and paged by
 * the gateway (`/devices?q&status&limit&offset`): with 5,000 devices only one page is fetched and
 * in the DOM. Filters and page live in the URL.
 */
export function DevicesPage(props: { url: string }) {
  const p = params(props.url);
  const q = p.get('q') ?? '';
  const status = p.get('status') ?? '';
  const page = Math.max(1, Number.parseInt(p.get('page') ?? '1', 10) || 1);
  const [devices, setDevices] = useState<DevicePage | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [text, setText] = useState(q);
  /** The query of the page shown now: only its answer is shown. */
  const latest = useRef('');

  useRefresh(
    async () => {
      try {
        const wanted = query({
          q: q.trim() || undefined,
          status: status || undefined,
          limit: PAGE_SIZE,
          offset: (page - 1) * PAGE_SIZE,
        });
        const got = await api<DevicePage>(`${V1}/devices${wanted}`);
        // Answers to an older filter are dropped: typing sends one request a key.
        if (wanted === latest.current) setDevices(got);
        setError(null);
      } catch (err) {
        setError(err);
      }
    },
    [q, status, page],
    10_000,
  );
  latest.current = query({
    q: q.trim() || undefined,
    status: status || undefined,
    limit: PAGE_SIZE,
    offset: (page - 1) * PAGE_SIZE,
  });

  const set = (changes: Record<string, string>) => {
    const next = new URLSearchParams({ q, status, page: String(page), ...changes });
    for (const [k, v] of [...next]) if (v === '' || (k === 'page' && v === '1')) next.delete(k);
    const s = next.toString();
    navigate(`/devices${s ? `?${s}` : ''}`, true);
  };

  const total = devices?.total ?? 0;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const current = Math.min(page, pages);
  const rows = devices?.items ?? [];
  const now = serverNow();

  return html`<section aria-labelledby="devices-title">
    <h1 id="devices-title">Devices</h1>
    <form class="filters" role="search" onSubmit=${(e: Event) => e.preventDefault()}>
      <label>Filter
        <input type="search" value=${text} placeholder="device or source"
          onInput=${(e: Event) => {
            const v = (e.target as HTMLInputElement).value;
            setText(v);
            set({ q: v, page: '1' });
          }} />
      </label>
      <label>Status
        <select value=${status} onChange=${(e: Event) => set({ status: (e.target as HTMLSelectElement).value, page: '1' })}>
          <option value="">any</option>
          ${STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select>
      </label>
    </form>
    <${LoadError} error=${error} />
    <p class="count" aria-live="polite" data-testid="device-count">
      ${devices === null ? 'Loading…' : `${num(total)} of ${num(devices.known)} devices`}
      ${pages > 1 ? ` · page ${current} of ${pages}` : ''}
    </p>
    <${Table}
      label="Devices"
      head=${['Device', 'Source', 'Status', 'Metrics', 'Latest values']}
      rowCount=${rows.length}
      empty=${devices === null ? 'Loading…' : 'No device matches.'}
      rows=${rows.map(
        (d) => html`<tr key=${d.id}>
          <td class="id"><a href=${`/devices/${encodeURIComponent(d.id)}`}>${d.id}</a></td>
          <td>${d.source}</td>
          <td><${Badge} state=${d.status} /> <span class="age">${duration(now - Date.parse(d.lastSeen))} ago</span></td>
          <td>${d.metrics.length}</td>
          <td class="wrap">${d.metrics
            .slice(0, LATEST_SHOWN)
            .map((m) => `${m.metric} ${num(m.value)}${m.unit ? ` ${m.unit}` : ''}`)
            .join(', ')}${d.metrics.length > LATEST_SHOWN ? ', …' : ''}</td>
        </tr>`,
      )}
    />
    ${
      pages > 1
        ? html`<nav class="pager" aria-label="Pages">
            <button type="button" disabled=${current <= 1} onClick=${() => set({ page: String(current - 1) })}>Previous page</button>
            <span>Page ${current} of ${pages}</span>
            <button type="button" disabled=${current >= pages} onClick=${() => set({ page: String(current + 1) })}>Next page</button>
          </nav>`
        : null
    }
  </section>`;
}
