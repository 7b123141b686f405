/**
 * Topic templates name what a topic carries: `sensors/{device}/{metric}`. A placeholder fills a
 * whole level; `+` levels match anything and name nothing; a trailing `#` matches the rest.
 */

import { sameLevel } from './topic-filter.js';

const PLACEHOLDER = /^\{(device|metric)\}$/;
const DOLLAR = 0x24;

export interface TopicTemplate {
  readonly template: string;
  /** The MQTT subscription filter: placeholders become `+`. */
  readonly filter: string;
  /** Device and metric named by the topic, or null when the topic doesn't match. */
  match(topic: string): { device?: string; metric?: string } | null;
}

export function isValidTemplate(template: string): boolean {
  if (template.length === 0) return false;
  const levels = template.split('/');
  const seen = new Set<string>();
  return levels.every((level, i) => {
    const p = PLACEHOLDER.exec(level);
    if (p) {
      if (seen.has(p[1] as string)) return false;
      seen.add(p[1] as string);
      return true;
    }
    if (level === '#') return i === levels.length - 1;
    if (level === '+') return true;
    return !/[#+{}]/.test(level);
  });
}

/** What one level of a template matches: its own text, or any non-empty level (naming it or not). */
type Level = { text: string } | { names: 'device' | 'metric' | null };

export function compileTemplate(template: string): TopicTemplate {
  if (!isValidTemplate(template)) throw new Error(`invalid topic template: ${template}`);
  const levels = template.split('/');
  const filter = levels.map((l) => (PLACEHOLDER.test(l) ? '+' : l)).join('/');
  const multi = levels[levels.length - 1] === '#';
  const fixed: Level[] = (multi ? levels.slice(0, -1) : levels).map((l) => {
    const p = PLACEHOLDER.exec(l);
    if (p) return { names: p[1] as 'device' | 'metric' };
    return l === '+' ? { names: null } : { text: l };
  });
  return {
    template,
    filter,
    // Walks the topic level by level without splitting it: it runs for every message.
    match(topic: string) {
      if (topic.charCodeAt(0) === DOLLAR) return null;
      const named: { device?: string; metric?: string } = {};
      let start = 0; // of the topic's next level; past the end once it has no more
      for (const level of fixed) {
        if (start > topic.length) return null;
        let end = topic.indexOf('/', start);
        if (end < 0) end = topic.length;
        if ('text' in level) {
          if (!sameLevel(level.text, 0, level.text.length, topic, start, end)) return null;
        } else {
          if (end === start) return null;
          if (level.names !== null) named[level.names] = topic.slice(start, end);
        }
        start = end + 1;
      }
      // Without a trailing #, the template's levels are all the topic's.
      if (!multi && start <= topic.length) return null;
      return named;
    },
  };
}
