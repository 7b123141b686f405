/**
 * Topic templates name what a topic carries: `sensors/{device}/{metric}`. A placeholder fills a
 * whole level; `+` levels match anything and name nothing; a trailing `#` matches the rest.
 */

const PLACEHOLDER = /^\{(device|metric)\}$/;

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

export function compileTemplate(template: string): TopicTemplate {
  if (!isValidTemplate(template)) throw new Error(`invalid topic template: ${template}`);
  const levels = template.split('/');
  const filter = levels.map((l) => (PLACEHOLDER.test(l) ? '+' : l)).join('/');
  const deviceAt = levels.indexOf('{device}');
  const metricAt = levels.indexOf('{metric}');
  const multi = levels[levels.length - 1] === '#';
  const fixed = levels.length - (multi ? 1 : 0);
  return {
    template,
    filter,
    match(topic: string) {
      if (topic.startsWith('$')) return null;
      const parts = topic.split('/');
      if (multi ? parts.length < fixed : parts.length !== fixed) return null;
      for (let i = 0; i < fixed; i++) {
        const l = levels[i] as string;
        const p = parts[i] as string;
        if (i === deviceAt || i === metricAt || l === '+') {
          if (p.length === 0) return null;
          continue;
        }
        if (l !== p) return null;
      }
      const named: { device?: string; metric?: string } = {};
      if (deviceAt >= 0) named.device = parts[deviceAt];
      if (metricAt >= 0) named.metric = parts[metricAt];
      return named;
    },
  };
}
