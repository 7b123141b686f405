import { useRef, useState } from 'preact/hooks';
import { ApiError, api, V1 } from '../api.js';
import { auth, authNote } from '../connection.js';
import { html } from '../html.js';
import { useObservable } from '../state.js';

/**
 * The sign-in form: the token goes in a POST body (never a URL, never storage) and comes back as
 * an HttpOnly session cookie; a wrong token is said so here, and the form stays.
 */
export function SignIn() {
  const note = useObservable(authNote);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    const token = input.current?.value ?? '';
    if (!token) {
      setError('Enter the gateway’s API token (api.token in its configuration).');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api(`${V1}/session`, { method: 'POST', body: { token } });
      if (input.current) input.current.value = '';
      authNote.set(null);
      auth.set('signed-in');
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? 'Wrong token: the gateway refused it. Check api.token (TIDEGATE_TOKEN) and try again.'
          : err instanceof ApiError
            ? `The gateway refused the sign-in: ${err.message}`
            : 'The gateway cannot be reached. Try again when it is back.',
      );
      input.current?.focus();
    } finally {
      setBusy(false);
    }
  };

  return html`<main class="sign-in">
    <form onSubmit=${submit} aria-labelledby="sign-in-title" novalidate>
      <h1 id="sign-in-title">Sign in to tidegate</h1>
      ${note ? html`<p class="note">${note}</p>` : null}
      <label for="token">Token</label>
      <input
        id="token"
        ref=${input}
        type="password"
        name="token"
        autocomplete="current-password"
        required
        aria-invalid=${error ? 'true' : undefined}
        aria-describedby=${error ? 'sign-in-error' : undefined}
      />
      ${error ? html`<p id="sign-in-error" class="error" role="alert">${error}</p>` : null}
      <button type="submit" disabled=${busy}>Sign in</button>
      <p class="hint">The token is the gateway’s <code>api.token</code>. It is exchanged for a session cookie and not kept by the browser.</p>
    </form>
  </main>`;
}
