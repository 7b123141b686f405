import { html } from '../html.js';

/** A table that scrolls sideways inside its own box on a narrow screen, never the page. */
export function Table(props: {
  label: string;
  head: string[];
  rows: unknown;
  empty?: string;
  rowCount: number;
}) {
  return html`<div class="table-wrap" tabindex="0" role="region" aria-label=${props.label}>
    <table>
      <thead><tr>${props.head.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
      <tbody>
        ${props.rows}
        ${props.rowCount === 0 ? html`<tr><td colspan=${props.head.length} class="empty">${props.empty ?? 'None.'}</td></tr>` : null}
      </tbody>
    </table>
  </div>`;
}

/** A state as a coloured word: online, firing, connected, … */
export function Badge(props: { state: string; text?: string }) {
  return html`<span class=${`badge s-${props.state}`}>${props.text ?? props.state}</span>`;
}

/** A load error, shown where the data would be. */
export function LoadError(props: { error: unknown }) {
  if (props.error === null || props.error === undefined) return null;
  return html`<p class="error" role="alert">Could not load: ${(props.error as Error).message ?? String(props.error)}</p>`;
}
