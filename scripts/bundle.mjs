// Bundles the gateway as `npm run build` runs it, after tsc and before the dashboard: esbuild takes
// tsc's output in dist/ (its entry points: the CLI, the library's gateway.js and every worker
// thread's file) and writes it back as a few minified ES modules with the third-party packages
// inside, and then removes tsc's files. Why (bench:footprint, issue 19): each of the ~600 modules
// of the unbundled gateway costs V8 a module record, its source text and its scope in the heap, and
// the loader a file read; bundled and minified, the idle gateway holds ~3 MiB less and starts in
// ~130 ms less (on an SD card, the file reads cost more still).
//
// - Every output file is at the top of dist/: `import.meta.url` of a module is rewritten to the
//   place tsc put it (dist/store/committer.js, …), so the paths it resolves (workers, the
//   dashboard, notify-exec, package.json, the shipped config) stay where they were.
// - A worker's file, found by its `new URL('./x.js', import.meta.url)` in the code, is bundled as
//   an entry of its own and reached through a one-line module at its old path.
// - Native packages stay out (better-sqlite3, serialport), and so does aedes: the broker turns off
//   a cache of the mqtt-packet copy aedes loads, found from aedes in node_modules (mqtt-broker.ts).
// - Whitespace and syntax are minified, names are not, so that a stack trace names functions and
//   classes (esbuild's keepNames instead costs ~2 MiB: a call per function); source maps go back to
//   src/*.ts through tsc's (`node --enable-source-maps` uses them).
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { build } from 'esbuild';

const DIST = resolve('dist');
const STAGE = resolve('dist.bundle');
/** The entry points besides the workers (those are found in the code, by FILE_URL). */
const ENTRIES = ['cli.js', 'gateway.js'];
const EXTERNAL = ['better-sqlite3', 'serialport', '@serialport/*', 'aedes'];
/** `new URL('./x.js', import.meta.url)`: a file of dist/ started by path (a worker). */
const FILE_URL = /new URL\((['"])(\.{1,2}\/[^'"]+\.js)\1, import\.meta\.url\)/g;

function jsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return path === join(DIST, 'ui') ? [] : jsFiles(path);
    return e.name.endsWith('.js') ? [path] : [];
  });
}

/** Entry name (a file at the top of dist/) → tsc's file; the workers named by their path. */
function entryPoints() {
  const entries = new Map(ENTRIES.map((f) => [f.replace(/\.js$/, ''), join(DIST, f)]));
  for (const file of jsFiles(DIST)) {
    for (const [, , rel] of readFileSync(file, 'utf8').matchAll(FILE_URL)) {
      const target = resolve(dirname(file), rel);
      if (!existsSync(target))
        throw new Error(`${relative(DIST, file)} starts ${rel}, which tsc did not emit`);
      entries.set(relative(DIST, target).replace(/\.js$/, '').replaceAll('/', '-'), target);
    }
  }
  return entries;
}

/** Each module of dist/ sees the URL tsc gave it, whichever output file it ends up in. */
const placeOfModules = {
  name: 'tsc-place',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      if (!args.path.startsWith(`${DIST}/`)) return undefined;
      const here = JSON.stringify(`./${relative(DIST, args.path)}`);
      const contents = readFileSync(args.path, 'utf8').replaceAll(
        'import.meta.url',
        `new URL(${here}, import.meta.url).href`,
      );
      return { contents, loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};

const entries = entryPoints();
rmSync(STAGE, { recursive: true, force: true });
await build({
  entryPoints: Object.fromEntries(entries),
  outdir: STAGE,
  entryNames: '[name]',
  chunkNames: 'chunk-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  // Bundled CommonJS packages require Node's modules.
  banner: {
    js: "import { createRequire as __tidegateRequire } from 'node:module'; const require = __tidegateRequire(import.meta.url);",
  },
  plugins: [placeOfModules],
  logLevel: 'warning',
});

// tsc's files go (the dashboard, built next, is not touched), the bundle takes their place.
for (const e of readdirSync(DIST)) if (e !== 'ui') rmSync(join(DIST, e), { recursive: true, force: true });
for (const e of readdirSync(STAGE)) renameSync(join(STAGE, e), join(DIST, e));
rmSync(STAGE, { recursive: true, force: true });
for (const [name, original] of entries) {
  if (original === join(DIST, `${name}.js`)) continue;
  const up = relative(dirname(original), DIST) || '.';
  mkdirSync(dirname(original), { recursive: true });
  writeFileSync(
    original,
    `// The ${name} worker's file, where the code starts it: its bundle is ${name}.js.\nimport '${up}/${name}.js';\n`,
    { flag: 'wx' },
  );
}
const size = readdirSync(DIST)
  .filter((f) => f.endsWith('.js'))
  .reduce((n, f) => n + readFileSync(join(DIST, f)).length, 0);
console.log(
  `bundle: ${entries.size} entry points (${entries.size - ENTRIES.length} workers), ${(size / 1024).toFixed(0)} KB of JavaScript in dist/`,
);
