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

/** Does `topic` match `filter`? Filters starting with a wildcard never match `$` topics (§4.7.2). */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
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
