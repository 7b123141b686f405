/**
 * Topic templates of mqtt upstreams: `tidegate/{gateway}/{type}/{rule}`. Placeholders may stand
 * anywhere in the topic; the rest is literal and may not hold MQTT wildcards.
 */

const PLACEHOLDERS = ['gateway', 'type', 'rule'] as const;
type Placeholder = (typeof PLACEHOLDERS)[number];

/** The `{rule}` of records that no rule produced (raw readings), so topics keep their levels. */
export const NO_RULE = 'readings';

const PLACEHOLDER_RE = /\{(gateway|type|rule)\}/g;

export function isValidUpstreamTopic(template: string): boolean {
  if (template.length === 0 || template.startsWith('$') || template.includes('\0')) return false;
  return !/[{}#+]/.test(template.replace(PLACEHOLDER_RE, ''));
}

export type TopicRenderer = (type: string, rule: string | null) => string;

/** Compiles a template once; the renderer then only joins strings. */
export function compileUpstreamTopic(template: string, gateway: string): TopicRenderer {
  if (!isValidUpstreamTopic(template)) throw new Error(`invalid upstream topic template: ${template}`);
  // Alternating literal text and placeholders; {gateway} is fixed, so it is folded into the text.
  const parts: (string | Exclude<Placeholder, 'gateway'>)[] = [];
  let literal = '';
  let at = 0;
  for (const m of template.matchAll(PLACEHOLDER_RE)) {
    literal += template.slice(at, m.index);
    at = m.index + m[0].length;
    const name = m[1] as Placeholder;
    if (name === 'gateway') {
      literal += gateway;
    } else {
      parts.push(literal, name);
      literal = '';
    }
  }
  parts.push(literal + template.slice(at));
  return (type, rule) => {
    let topic = '';
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] as string;
      // Even indexes are literal text, odd ones placeholders.
      topic += i % 2 === 0 ? p : p === 'type' ? type : (rule ?? NO_RULE);
    }
    return topic;
  };
}
