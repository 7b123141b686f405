import { describeFound } from '../../model/found.js';
import { type ReadingCandidate, ReadingRejection } from '../../model/reading.js';
import { type Decoded, decodePayload } from '../decoders.js';
import { DEVICE_FIELD, regexGroups, type SerialSourceConfig, SKIP_COLUMN, TS_FIELD } from './config.js';

/**
 * Line parsers of the serial source (SPEC §3): one text line in, reading candidates (validated
 * later by Ingest) and rejections out. Pure, and they never throw: a line of garbage is one
 * `malformed_payload` rejection with a message saying what was wrong, and the stream goes on.
 *
 * - `json`: what an MQTT payload may be (decoders.ts, `auto`): a bare number, `{"value": …}`, or a
 *   flat object of several metrics with an optional `ts`/`time` and `device`.
 * - `csv`: fields in the order of `columns`.
 * - `kv`: `t=21.5 h=40` or `t:21.5,h:40`; keys name metrics, except `ts`/`time` and `device`.
 * - `regex`: named groups; `ts`, `device`, and the metrics.
 *
 * A field that is not a number is rejected on its own; the good fields of the line are kept.
 */
export type LineParser = (line: string) => Decoded;

export type ParserConfig = Pick<
  SerialSourceConfig,
  'id' | 'format' | 'device' | 'metric' | 'columns' | 'separator' | 'regex'
>;

export interface ParserOptions {
  /** More readings than this in one line reject it whole (ingest.maxMetricsPerMessage). */
  maxMetrics?: number;
}

const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const EPOCH_MS_RE = /^\d{1,16}$/;
/** C0 controls but tab, DEL, and the replacement character of a lenient decoder: line noise. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const NOISE_RE = /[\u0000-\u0008\u000b-\u001f\u007f\ufffd]/;
const KV_SPLIT_RE = /[\s,;]+/;

function malformed(message: string): ReadingRejection {
  return new ReadingRejection('malformed_payload', message);
}

function rejectLine(message: string): Decoded {
  return { candidates: [], rejections: [malformed(message)] };
}

/** A ts field as text: digits are epoch milliseconds, anything else goes to the ISO parser. */
function tsValue(text: string): string | number | undefined {
  if (text === '') return undefined;
  return EPOCH_MS_RE.test(text) ? Number(text) : text;
}

export function createLineParser(config: ParserConfig, options: ParserOptions = {}): LineParser {
  const maxMetrics = options.maxMetrics ?? 256;
  const device = config.device ?? config.id;
  const parseBody = bodyParser(config, device, maxMetrics);
  return (raw: string): Decoded => {
    try {
      const line = raw.trim();
      if (line.length === 0) return rejectLine('an empty line');
      const noise = NOISE_RE.exec(line);
      if (noise) {
        const code = noise[0].charCodeAt(0).toString(16).padStart(4, '0');
        return rejectLine(
          `line noise: character U+${code} at column ${noise.index + 1} of ${describeFound(line)}`,
        );
      }
      const decoded = parseBody(line);
      if (decoded.candidates.length > maxMetrics)
        return {
          candidates: [],
          rejections: [
            new ReadingRejection(
              'too_many_metrics',
              `${decoded.candidates.length} readings in one line, more than ${maxMetrics}`,
            ),
          ],
        };
      return decoded;
    } catch (err) {
      // Not expected; a parser bug must still not stop the stream.
      return rejectLine(`the line could not be parsed: ${(err as Error)?.message ?? String(err)}`);
    }
  };
}

function bodyParser(config: ParserConfig, device: string, maxMetrics: number): LineParser {
  switch (config.format) {
    case 'json':
      return (line) => parseJsonLine(line, device, config.metric, maxMetrics);
    case 'csv':
      return csvParser(config.columns ?? [], config.separator, device);
    case 'kv':
      return (line) => parseKvLine(line, device);
    case 'regex':
      return regexParser(config.regex ?? '', device);
  }
}

function parseJsonLine(
  line: string,
  device: string,
  metric: string | undefined,
  maxMetrics: number,
): Decoded {
  // No device or metric in the context: the line's own win, the configured ones fill in.
  const decoded = decodePayload(line, 'auto', { maxMetrics });
  const out: Decoded = { candidates: [], rejections: decoded.rejections };
  for (const c of decoded.candidates) {
    c.device ??= device;
    c.metric ??= metric;
    if (c.metric === undefined)
      out.rejections.push(
        malformed(
          `${describeFound(line)} names no metric: set \`metric\` in the source config for bare values`,
        ),
      );
    else out.candidates.push(c);
  }
  return out;
}

/** The outcome of a line's fields: the good ones, one rejection per bad one. */
class FieldCollector {
  readonly candidates: ReadingCandidate[] = [];
  readonly rejections: ReadingRejection[] = [];

  constructor(private readonly line: string) {}

  metric(device: string, metric: string, text: string): void {
    if (NUMBER_RE.test(text)) this.candidates.push({ device, metric, value: Number(text) });
    else
      this.rejections.push(
        malformed(
          `${metric}: expected a number, found ${describeFound(text)} in ${describeFound(this.line)}`,
        ),
      );
  }

  /** Applies the line's ts to its readings; a line with no good field is one rejection. */
  finish(ts: string | number | undefined, emptyMessage: string): Decoded {
    if (this.candidates.length === 0) {
      if (this.rejections.length > 1) return rejectLine(`no numeric field in ${describeFound(this.line)}`);
      if (this.rejections.length === 0) return rejectLine(emptyMessage);
    }
    if (ts !== undefined) for (const c of this.candidates) c.ts = ts;
    return { candidates: this.candidates, rejections: this.rejections };
  }
}

function csvParser(columns: readonly string[], separator: string, defaultDevice: string): LineParser {
  return (line) => {
    const fields = line.split(separator);
    if (fields.length !== columns.length)
      return rejectLine(
        `expected ${columns.length} fields separated by ${JSON.stringify(separator)}, found ${fields.length} in ${describeFound(line)}`,
      );
    let device = defaultDevice;
    let ts: string | number | undefined;
    for (let i = 0; i < columns.length; i++) {
      const column = columns[i];
      const text = fields[i]?.trim() ?? '';
      if (column === TS_FIELD) ts = tsValue(text);
      else if (column === DEVICE_FIELD && text !== '') device = text;
    }
    const out = new FieldCollector(line);
    for (let i = 0; i < columns.length; i++) {
      const column = columns[i];
      if (column === undefined || column === '' || column === SKIP_COLUMN) continue;
      if (column === TS_FIELD || column === DEVICE_FIELD) continue;
      const text = fields[i]?.trim() ?? '';
      if (text !== '') out.metric(device, column, text);
    }
    return out.finish(ts, `every metric field is empty in ${describeFound(line)}`);
  };
}

function parseKvLine(line: string, defaultDevice: string): Decoded {
  let device = defaultDevice;
  let ts: string | number | undefined;
  const pairs: [string, string][] = [];
  const bad: ReadingRejection[] = [];
  for (const token of line.split(KV_SPLIT_RE)) {
    if (token === '') continue;
    // `=` first, so that `ts=2026-11-24T10:00:00Z` keeps its colons; `ts:…` splits at the first one.
    let at = token.indexOf('=');
    if (at < 0) at = token.indexOf(':');
    if (at <= 0 || at === token.length - 1) {
      bad.push(
        malformed(`expected key=value or key:value, found ${describeFound(token)} in ${describeFound(line)}`),
      );
      continue;
    }
    const key = token.slice(0, at);
    const value = token.slice(at + 1);
    if (key === TS_FIELD || key === 'time') ts = tsValue(value);
    else if (key === DEVICE_FIELD) device = value;
    else pairs.push([key, value]);
  }
  const out = new FieldCollector(line);
  out.rejections.push(...bad);
  for (const [key, value] of pairs) out.metric(device, key, value);
  return out.finish(ts, `no metric=value pair in ${describeFound(line)}`);
}

function regexParser(pattern: string, defaultDevice: string): LineParser {
  const groups = regexGroups(pattern);
  if (groups instanceof Error) {
    const message = `the configured regex does not compile: ${groups.message}`;
    return () => rejectLine(message);
  }
  const re = new RegExp(pattern);
  const metrics = groups.filter((g) => g !== TS_FIELD && g !== DEVICE_FIELD);
  return (line) => {
    const m = re.exec(line);
    if (!m) return rejectLine(`${describeFound(line)} does not match the pattern`);
    const g = m.groups ?? {};
    const deviceText = g[DEVICE_FIELD];
    const device = deviceText ? deviceText : defaultDevice;
    const out = new FieldCollector(line);
    for (const metric of metrics) {
      const text = g[metric]?.trim();
      if (text) out.metric(device, metric, text);
    }
    return out.finish(
      tsValue(g[TS_FIELD]?.trim() ?? ''),
      `no metric group captured a value in ${describeFound(line)}`,
    );
  };
}
