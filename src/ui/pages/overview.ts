import { useRef, useState } from 'preact/hooks';
import { type Alert, api, type DevicePage, type Health, query, serverNow, V1 } from '../api.js';
import { useRefresh, useStream } from '../connection.js';
import { bytes, duration, key, num, time } from '../format.js';
import { html } from '../html.js';
import { byLabel, parseMetrics, type Sample, total } from '../metrics.js';
import { Badge, LoadError, Table } from './common.js';

const COUNTERS = new Set([
  'tidegate_readings_rejected_total',
  'tidegate_late_dropped_total',
  'tidegate_readings_duplicate_total',
]);

const DEVICE_ROWS = 12;

/**
 * The overview: gateway status and uptime, the live ingest rate (from the sources' reading
 * counts, every 2 s), each source and upstream, the rejected, late and duplicate counts, the
 * devices by status and the alerts firing now (refreshed on every decision of the stream).
 */
export function OverviewPage() {
  const [health, setHealth] = useState<Health | null>(null);
  const [rate, setRate] = useState<Map<string, number> | null>(null);
  const [counters, setCounters] = useState<Sample[]>([]);
  const [alerts, setAlerts] = useState<Alert[] | null>(null);
  const [devices, setDevices] = useState<DevicePage | null>(null);
  const [error, setError] = useState<unknown>(null);
  const last = useRef<{ at: number; readings: Map<string, number> } | null>(null);

  useRefresh(
    async () => {
      try {
        const h = await api<Health>(`${V1}/health`);
        const now = performance.now();
        const readings = new Map(h.sources.map((s) => [s.id, Number(s['readings'] ?? 0)]));
        const prev = last.current;
        if (prev && now > prev.at) {
          const r = new Map<string, number>();
          for (const [id, n] of readings)
            r.set(id, Math.max(0, ((n - (prev.readings.get(id) ?? n)) * 1000) / (now - prev.at)));
          setRate(r);
        }
        last.current = { at: now, readings };
        setHealth(h);
        setError(null);
      } catch (err) {
        setError(err);
      }
    },
    [],
    2000,
  );
  // The counters change rarely and /metrics is the gateway's biggest answer: every 10 s.
  useRefresh(
    async () => {
      try {
        setCounters(parseMetrics(await api<string>('/metrics', { text: true }), COUNTERS));
      } catch (err) {
        setError(err);
      }
    },
    [],
    10_000,
  );
  const loadAlerts = async () => {
    try {
      setAlerts((await api<{ items: Alert[] }>(`${V1}/alerts`)).items);
    } catch (err) {
      setError(err);
    }
  };
  // Every decision of the stream reloads them; the timer only catches what a reconnect missed.
  useRefresh(loadAlerts, [], 30_000);
  useRefresh(
    async () => {
      try {
        setDevices(await api<DevicePage>(`${V1}/devices${query({ sort: 'attention', limit: DEVICE_ROWS })}`));
      } catch (err) {
        setError(err);
      }
    },
    [],
    // The counts and the first rows only (not every device with its values): small on a big site too.
    30_000,
  );
  useStream('?type=decision', () => void loadAlerts());

  const rateTotal = rate ? [...rate.values()].reduce((a, b) => a + b, 0) : null;
  const byStatus = new Map(Object.entries(devices?.byStatus ?? {}));
  const shown = devices?.items ?? [];
  const rejected = byLabel(counters, 'tidegate_readings_rejected_total', 'reason');

  return html`<section aria-labelledby="overview-title">
    <h1 id="overview-title">Overview</h1>
    <${LoadError} error=${error} />
    ${
      health
        ? html`<div class="cards">
            <div class="card" aria-label="Gateway">
              <h2>Gateway</h2>
              <p><${Badge} state=${health.status} /> <strong>${health.gateway}</strong> · v${health.version}</p>
              <p>Up <span data-testid="uptime">${duration(serverNow() - Date.parse(health.startedAt))}</span> (since ${time(health.startedAt)})</p>
              <p>Store ${bytes(health.store.bytes)} · ${num(health.store.pendingWrites)} pending${health.store.lastError ? html` · <span class="error">${health.store.lastError}</span>` : null}</p>
              ${health.broker ? html`<p>Broker port ${health.broker.port} · ${num(health.broker.clients)} clients</p>` : null}
            </div>
            <div class="card" aria-label="Ingest">
              <h2>Ingest</h2>
              <p class="big"><span data-testid="ingest-rate">${rateTotal === null ? '…' : num(Math.round(rateTotal * 10) / 10)}</span> readings/s</p>
              <p>Rejected <strong data-testid="rejected">${num(total(counters, 'tidegate_readings_rejected_total'))}</strong>
                ${rejected.size ? html` (${[...rejected].map(([r, n]) => `${r} ${num(n)}`).join(', ')})` : null}
                ${' · '}late <strong data-testid="late">${num(total(counters, 'tidegate_late_dropped_total'))}</strong>
                ${' · '}duplicates <strong data-testid="duplicates">${num(total(counters, 'tidegate_readings_duplicate_total'))}</strong></p>
            </div>
          </div>
          <h2>Sources</h2>
          <${Table}
            label="Sources"
            head=${['Source', 'Type', 'State', 'Rate', 'Last reading', 'Last error']}
            rowCount=${health.sources.length}
            empty="No sources configured."
            rows=${health.sources.map(
              (s) => html`<tr>
                <td>${s.id}</td><td>${s.type}</td><td><${Badge} state=${s.state} /></td>
                <td>${rate?.has(s.id) ? `${num(Math.round((rate.get(s.id) ?? 0) * 10) / 10)}/s` : '…'}</td>
                <td>${s.lastReadingAt ? `${duration(serverNow() - Date.parse(s.lastReadingAt))} ago` : 'never'}</td>
                <td class="wrap">${s.lastError ?? ''}</td>
              </tr>`,
            )}
          />
          <h2>Upstreams</h2>
          <${Table}
            label="Upstreams"
            head=${['Upstream', 'Type', 'State', 'Backlog', 'Oldest', 'Last error']}
            rowCount=${health.upstreams.length}
            empty="No upstreams configured."
            rows=${health.upstreams.map(
              (u) => html`<tr>
                <td>${u.id}</td><td>${u.type}</td><td><${Badge} state=${u.state} /></td>
                <td>${num(u.backlog)}</td>
                <td>${u.oldestAgeSeconds === null ? '–' : duration(u.oldestAgeSeconds * 1000)}</td>
                <td class="wrap">${u.lastError ?? ''}</td>
              </tr>`,
            )}
          />`
        : html`<p>Loading…</p>`
    }
    <h2>Alerts firing now</h2>
    <${Table}
      label="Alerts firing now"
      head=${['Rule', 'Group', 'Since', 'Values']}
      rowCount=${alerts?.length ?? 0}
      empty=${alerts ? 'Nothing is firing.' : 'Loading…'}
      rows=${(alerts ?? []).map(
        (a) => html`<tr>
          <td><a href=${`/rules/${encodeURIComponent(a.rule)}`}>${a.rule}</a></td><td>${key(a.key)}</td>
          <td>${time(a.since)}</td><td class="wrap">${Object.entries(a.values)
            .map(([k, v]) => `${k} ${num(v)}`)
            .join(', ')}</td>
        </tr>`,
      )}
    />
    <h2>Devices</h2>
    <p>${devices ? html`${num(devices.known)} devices: ${[...byStatus].map(([s, n]) => html`<${Badge} state=${s} text=${`${num(n)} ${s}`} /> `)}` : 'Loading…'}
      <a href="/devices">All devices</a></p>
    <${Table}
      label="Devices needing attention first"
      head=${['Device', 'Source', 'Status', 'Last reading']}
      rowCount=${shown.length}
      empty=${devices ? 'No device has sent anything yet.' : 'Loading…'}
      rows=${shown.map(
        (d) => html`<tr>
          <td><a href=${`/devices/${encodeURIComponent(d.id)}`}>${d.id}</a></td><td>${d.source}</td>
          <td><${Badge} state=${d.status} /></td><td>${duration(serverNow() - Date.parse(d.lastSeen))} ago</td>
        </tr>`,
      )}
    />
  </section>`;
}
