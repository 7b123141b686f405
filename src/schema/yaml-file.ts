import { readFileSync } from 'node:fs';
import { type Document, LineCounter, parseDocument } from 'yaml';
import { ConfigError } from './problems.js';

/** A parsed YAML file with what is needed to point at a line in it. */
export interface YamlSource {
  file: string;
  doc: Document;
  lines: LineCounter;
  /** The document as plain data (null for an empty file). */
  data: unknown;
}

/** Parses YAML text; syntax errors become a ConfigError with file, line and column. */
export function parseYaml(text: string, file: string): YamlSource {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = lines.linePos(e.pos[0]);
        return {
          file,
          path: [],
          line: pos.line,
          column: pos.col,
          message: `YAML: ${e.message.split('\n')[0]}`,
        };
      }),
    );
  }
  return { file, doc, lines, data: doc.toJS() };
}

/** Reads and parses a YAML file; `what` names it in the error when it can't be read. */
export function readYaml(file: string, what = 'file'): YamlSource {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([
      { file, path: [], message: `cannot read the ${what}: ${(err as Error).message}` },
    ]);
  }
  return parseYaml(text, file);
}
