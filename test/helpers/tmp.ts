import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh directory under the system temp dir; `remove()` deletes it and everything in it. */
export interface TempDir {
  readonly path: string;
  /** A path inside the directory (not created). */
  file(...parts: string[]): string;
  remove(): void;
}

export function makeTempDir(prefix = 'tidegate-test-'): TempDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return {
    path,
    file: (...parts) => join(path, ...parts),
    remove: () => rmSync(path, { recursive: true, force: true }),
  };
}
