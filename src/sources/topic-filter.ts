/** MQTT topic filters (`+`, `#`), as the broker's ACLs use them (MQTT 3.1.1 §4.7). */

export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || filter.length > 65535) return false;
  const levels = filter.split('/');
  return levels.every((level, i) => {
    if (level === '#') return i === levels.length - 1;
    if (level === '+') return true;
    return !level.includes('#') && !level.includes('+');
  });
}

const PLUS = 0x2b;
const HASH = 0x23;
const DOLLAR = 0x24;

/**
 * Does `topic` match `filter`? Filters starting with a wildcard never match `$` topics (§4.7.2).
 * Walks both strings level by level without splitting them: it runs for every publish.
 */
export function topicMatches(filter: string, topic: string): boolean {
  const first = filter.charCodeAt(0);
  if (topic.charCodeAt(0) === DOLLAR && (first === PLUS || first === HASH)) return false;
  let f = 0; // start of the filter's level
  let t = 0; // start of the topic's level; -1 once the topic has no more levels
  for (;;) {
    let fEnd = filter.indexOf('/', f);
    if (fEnd < 0) fEnd = filter.length;
    const wildcard = fEnd - f === 1 ? filter.charCodeAt(f) : 0;
    if (wildcard === HASH) return true;
    if (t < 0) return false;
    let tEnd = topic.indexOf('/', t);
    if (tEnd < 0) tEnd = topic.length;
    if (wildcard !== PLUS && !sameLevel(filter, f, fEnd, topic, t, tEnd)) return false;
    if (fEnd === filter.length) return tEnd === topic.length;
    f = fEnd + 1;
    t = tEnd === topic.length ? -1 : tEnd + 1;
  }
}

/** Is a[aFrom, aTo) the same text as b[bFrom, bTo)? */
export function sameLevel(
  a: string,
  aFrom: number,
  aTo: number,
  b: string,
  bFrom: number,
  bTo: number,
): boolean {
  if (aTo - aFrom !== bTo - bFrom) return false;
  for (let i = aFrom, j = bFrom; i < aTo; i++, j++) if (a.charCodeAt(i) !== b.charCodeAt(j)) return false;
  return true;
}

/** Does any filter of the list match `topic`? */
export function anyTopicMatches(filters: readonly string[], topic: string): boolean {
  for (const f of filters) if (topicMatches(f, topic)) return true;
  return false;
}

/**
 * Is every topic that `requested` can match also matched by `allowed`? Used to authorize a
 * SUBSCRIBE: `sensors/+/temp` is within `sensors/#`, `#` is not within `sensors/#`.
 */
export function filterWithin(requested: string, allowed: string): boolean {
  const r = requested.split('/');
  const a = allowed.split('/');
  // Wildcards at the first level never match `$` topics, so `$SYS/#` is not within `#`.
  if (requested.startsWith('$') && (allowed.startsWith('+') || allowed.startsWith('#'))) return false;
  for (let i = 0; i < a.length; i++) {
    const al = a[i];
    if (al === '#') return true;
    const rl = r[i];
    if (rl === undefined) return false;
    if (rl === '#') return false;
    if (al === '+') continue;
    if (rl === '+' || rl !== al) return false;
  }
  return r.length === a.length;
}
