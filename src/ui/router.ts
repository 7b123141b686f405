import { Observable } from './state.js';

/** The page's URL (path and query), changed by links, `navigate` and the browser's Back. */
export const location = new Observable(window.location.pathname + window.location.search);

/** Goes to a page of the dashboard without reloading; `replace` keeps history as it is (filters). */
export function navigate(url: string, replace = false): void {
  if (url === location.value) return;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  location.set(url);
  if (!replace) window.scrollTo(0, 0);
}

window.addEventListener('popstate', () => location.set(window.location.pathname + window.location.search));

// Links within the dashboard change the page in place; others (exports, the API) load as usual.
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element | null)?.closest?.('a');
  if (!a || a.target || a.hasAttribute('download') || a.origin !== window.location.origin) return;
  if (a.pathname.startsWith('/api/') || a.pathname === '/metrics') return;
  e.preventDefault();
  navigate(a.pathname + a.search);
});

export type Route =
  | { page: 'overview' }
  | { page: 'devices' }
  | { page: 'device'; id: string }
  | { page: 'rules' }
  | { page: 'rule'; id: string | null }
  | { page: 'alerts' }
  | { page: 'missing' };

export function route(url: string): Route {
  const path = url.split('?')[0] ?? '/';
  let parts: string[];
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return { page: 'missing' }; // A malformed escape (`/devices/%E0`).
  }
  const [first, second] = parts;
  if (parts.length === 0) return { page: 'overview' };
  if (first === 'devices' && parts.length === 1) return { page: 'devices' };
  if (first === 'devices' && second !== undefined && parts.length === 2)
    return { page: 'device', id: second };
  if (first === 'rules' && parts.length === 1) return { page: 'rules' };
  if (first === 'rules' && second !== undefined && parts.length === 2)
    return { page: 'rule', id: second === 'new' ? null : second };
  if (first === 'alerts' && parts.length === 1) return { page: 'alerts' };
  return { page: 'missing' };
}

/** The query parameters of the current URL. */
export function params(url: string): URLSearchParams {
  const i = url.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : url.slice(i + 1));
}
