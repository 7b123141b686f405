/** A short, quoted rendering of what was found, for messages: `expected …, found "ten seconds"`. */
export function describeFound(x: unknown): string {
  if (x === undefined) return 'nothing';
  if (x === null) return 'null';
  if (typeof x === 'string') return JSON.stringify(x.length > 60 ? `${x.slice(0, 60)}…` : x);
  if (typeof x === 'number' || typeof x === 'boolean') return String(x);
  if (Array.isArray(x)) return 'a list';
  return `a ${typeof x}`;
}
