/**
 * Device and metric globs (fine print 13): `*` is any run of characters, `?` exactly one; the
 * pattern matches the whole name, case-sensitively. No other character is special.
 */

/** A compiled name test. */
export type NameMatcher = (name: string) => boolean;

/** A matcher that accepts every name: what an absent `match.device` or `match.metric` means. */
export const matchAll: NameMatcher = () => true;

function escapeRegExp(text: string): string {
  // Only the syntax characters: the `u` flag refuses needless escapes such as `\-`.
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** True when the pattern has no wildcard: it then matches only its own text. */
export function isExactGlob(pattern: string): boolean {
  return !pattern.includes('*') && !pattern.includes('?');
}

function globSource(pattern: string): string {
  let src = '';
  for (const c of pattern) {
    if (c === '*') src += '.*';
    else if (c === '?') src += '.';
    else src += escapeRegExp(c);
  }
  return src;
}

/** Compiles one glob or a list of globs (any may match). */
export function compileGlob(patterns: string | readonly string[]): NameMatcher {
  const list = typeof patterns === 'string' ? [patterns] : patterns;
  if (list.length === 0) return () => false;
  if (list.every(isExactGlob)) {
    if (list.length === 1) {
      const only = list[0] as string;
      return (name) => name === only;
    }
    const set = new Set(list);
    return (name) => set.has(name);
  }
  if (list.length === 1 && list[0] === '*') return matchAll;
  // The `s` flag lets `*` and `?` cross any character; `u` makes `?` one code point.
  const re = new RegExp(`^(?:${list.map(globSource).join('|')})$`, 'su');
  return (name) => re.test(name);
}

/** The exact names a matcher accepts, or null when it has wildcards (used to index rules). */
export function exactNames(patterns: string | readonly string[] | undefined): string[] | null {
  if (patterns === undefined) return null;
  const list = typeof patterns === 'string' ? [patterns] : [...patterns];
  return list.every(isExactGlob) ? list : null;
}
