import { accessSync, constants, statSync } from 'node:fs';
import type { LineCounter, Document as YamlDocument } from 'yaml';
import { type ConfigProblem, locate } from '../schema/problems.js';

/**
 * Files that sources and upstreams read when they start (TLS PEM files), looked at here so that
 * `validate` finds one missing as `run` would, at its path in the config.
 */
const FILES_READ_AT_START: Record<string, Record<string, readonly string[]>> = {
  sources: { mqtt: ['ca', 'cert', 'key'] },
  upstreams: { mqtt: ['ca', 'cert', 'key'], http: ['ca'], nats: ['ca', 'cert', 'key', 'creds'] },
};

/** Why `path` cannot be read, or null when it can. */
export function unreadableFile(path: string): string | null {
  try {
    if (!statSync(path).isFile()) return 'not a file';
    accessSync(path, constants.R_OK);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no such file';
    if (code === 'EACCES') return 'permission denied';
    return (err as Error).message;
  }
}

/** Every file named in `data` (the config before the schema) that cannot be read. */
export function checkFilesReadAtStart(
  data: Record<string, unknown>,
  file: string,
  doc?: YamlDocument,
  lines?: LineCounter,
  envOrigins?: Map<string, string>,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const [section, byType] of Object.entries(FILES_READ_AT_START)) {
    const items = data[section];
    if (!Array.isArray(items)) continue;
    items.forEach((item: unknown, i) => {
      if (typeof item !== 'object' || item === null) return;
      const entry = item as Record<string, unknown>;
      for (const key of byType[String(entry['type'])] ?? []) {
        const value = entry[key];
        if (typeof value !== 'string' || value === '') continue;
        const why = unreadableFile(value);
        if (why === null) continue;
        const path = [section, i, key];
        const env = envOrigins?.get(JSON.stringify(path));
        problems.push({
          file,
          path,
          message: `cannot read the file ${value}: ${why}`,
          ...locate(doc, lines, path, false),
          ...(env ? { env } : {}),
        });
      }
    });
  }
  return problems;
}
