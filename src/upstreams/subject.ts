/**
 * Subject templates of nats upstreams: `tidegate.{gateway}.{type}.{rule}`. Besides rendering a
 * subject per record, a template must name the subjects of one gateway and no other (the filter the
 * upstream asks the stream's last message of), and may name the subjects a created stream takes.
 */
import { compileUpstreamTopic, type TopicRenderer } from './topic.js';

const PLACEHOLDER_RE = /\{(gateway|type|rule)\}/g;
const PER_RECORD_RE = /\{(type|rule)\}/;

/** Why `template` is not a usable nats subject template, or null when it is. */
export function natsSubjectProblem(template: string): string | null {
  const tokens = template.split('.');
  if (tokens.some((t) => t === '')) return 'expected tokens separated by single dots, none empty';
  for (const t of tokens) {
    const literal = t.replace(PLACEHOLDER_RE, '');
    if (/[\s*>{}#+$]/.test(literal)) {
      return `expected no whitespace, wildcards (* >) or braces other than {gateway}, {type} and {rule}, found "${t}"`;
    }
  }
  const g = tokens.findIndex((t) => t.includes('{gateway}'));
  if (g === -1) return 'expected {gateway} in the subject: each gateway needs subjects of its own';
  if (tokens.slice(0, g + 1).some((t) => PER_RECORD_RE.test(t))) {
    return 'expected {type} and {rule} only after the token with {gateway}, so that one filter (prefix.{gateway}.>) selects one gateway';
  }
  if (g === tokens.length - 1) return 'expected at least one token after the one with {gateway}';
  return null;
}

export interface NatsSubjects {
  render: TopicRenderer;
  /** Every subject of this gateway and no other's, e.g. `tidegate.gw-1.>`. */
  gatewayFilter: string;
}

export function compileNatsSubject(template: string, gateway: string): NatsSubjects {
  const problem = natsSubjectProblem(template);
  if (problem !== null) throw new Error(`invalid nats subject template ${template}: ${problem}`);
  if (gateway.includes('.')) {
    throw new Error(`gateway id "${gateway}" has a dot, which would split a subject token`);
  }
  const tokens = template.split('.');
  const g = tokens.findIndex((t) => t.includes('{gateway}'));
  const prefix = tokens
    .slice(0, g + 1)
    .join('.')
    .replaceAll('{gateway}', gateway);
  return { render: compileUpstreamTopic(template, gateway), gatewayFilter: `${prefix}.>` };
}

/**
 * The subjects a stream created for this template takes: every gateway's, i.e. the literal tokens
 * before the first placeholder followed by `>` (`tidegate.>`); null when the template starts with one.
 */
export function streamSubjectsOf(template: string): string | null {
  const tokens = template.split('.');
  const first = tokens.findIndex((t) => t.includes('{'));
  if (first <= 0) return null;
  return `${tokens.slice(0, first).join('.')}.>`;
}
