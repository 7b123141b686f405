import 'uplot/dist/uPlot.min.css';
import './styles.css';
import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import { api, prefetch, V1 } from './api.js';
import { auth, checkSession, online } from './connection.js';
import { html } from './html.js';
import { AlertsPage } from './pages/alerts.js';
import { DevicePage } from './pages/device.js';
import { DevicesPage } from './pages/devices.js';
import { OverviewPage } from './pages/overview.js';
import { RulePage } from './pages/rule.js';
import { RulesPage } from './pages/rules.js';
import { SignIn } from './pages/sign-in.js';
import { location, route } from './router.js';
import { useObservable } from './state.js';

const NAV = [
  ['/', 'Overview', 'overview'],
  ['/devices', 'Devices', 'devices'],
  ['/rules', 'Rules', 'rules'],
  ['/alerts', 'Alerts', 'alerts'],
] as const;

function section(page: string): string {
  if (page === 'device') return 'devices';
  if (page === 'rule') return 'rules';
  return page;
}

async function signOut(): Promise<void> {
  try {
    await api(`${V1}/session`, { method: 'DELETE' });
  } finally {
    auth.set('signed-out');
  }
}

function Page(props: { url: string }) {
  const r = route(props.url);
  switch (r.page) {
    case 'overview':
      return html`<${OverviewPage} />`;
    case 'devices':
      return html`<${DevicesPage} url=${props.url} />`;
    case 'device':
      return html`<${DevicePage} key=${r.id} id=${r.id} url=${props.url} />`;
    case 'rules':
      return html`<${RulesPage} />`;
    case 'rule':
      return html`<${RulePage} key=${r.id ?? '(new)'} id=${r.id} />`;
    case 'alerts':
      return html`<${AlertsPage} />`;
    case 'missing':
      return html`<section><h1>Not found</h1><p>No page at ${props.url}. <a href="/">Overview</a></p></section>`;
  }
}

function App() {
  const a = useObservable(auth);
  const up = useObservable(online);
  const url = useObservable(location);
  const current = section(route(url).page);
  useEffect(() => {
    void checkSession();
  }, []);
  useEffect(() => {
    document.body.dataset['online'] = String(up);
  }, [up]);

  const banner = up
    ? null
    : html`<div class="banner" role="alert">
        The gateway cannot be reached. Retrying… what you see may be out of date.
      </div>`;
  if (a === 'unknown') return html`${banner}<p class="boot">Connecting to the gateway…</p>`;
  if (a === 'signed-out') return html`${banner}<${SignIn} />`;
  return html`
    <header class="top">
      <a class="brand" href="/">tidegate</a>
      <nav aria-label="Main">
        ${NAV.map(
          ([href, label, id]) =>
            html`<a href=${href} aria-current=${current === id ? 'page' : undefined}>${label}</a>`,
        )}
      </nav>
      ${a === 'signed-in' ? html`<button type="button" class="quiet" onClick=${signOut}>Sign out</button>` : null}
    </header>
    ${banner}
    <main id="main"><${Page} url=${url} /></main>
  `;
}

// What the first page needs is asked for now, side by side, not after the sign-in check answered
// and the page rendered (the device page's first chart waited on three round trips in a row).
prefetch(`${V1}/session`);
{
  const first = route(location.value);
  if (first.page === 'device') prefetch(`${V1}/devices/${encodeURIComponent(first.id)}`);
}

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(html`<${App} />`, root);
}
