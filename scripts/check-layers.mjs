// The imports docs/architecture.md allows each folder of src/, checked over the import graph madge
// builds (type imports included). Run by `npm run lint`; prints every import outside its layer.
import madge from 'madge';

/** Folder → the folders (`name/`) or modules (`name/file.ts`) of other folders it may import. */
const MAY_IMPORT = {
  model: ['engine/expression.ts'],
  runtime: ['model/'],
  schema: ['model/'],
  engine: ['model/', 'runtime/clock.ts'],
  sources: ['model/', 'schema/', 'ingest/', 'runtime/'],
  ingest: ['model/', 'store/', 'engine/compile.ts', 'runtime/'],
  rules: ['engine/', 'model/', 'store/', 'ingest/duplicates.ts', 'config/rules.ts', 'runtime/'],
  store: ['model/', 'engine/decision.ts', 'runtime/'],
  forward: ['store/', 'upstreams/upstream.ts', 'runtime/'],
  upstreams: ['model/', 'schema/', 'runtime/'],
  api: [
    'model/',
    'runtime/',
    'schema/',
    'store/',
    'rules/catalog.ts',
    'config/',
    'sources/source.ts',
    'forward/forwarder.ts',
  ],
  config: ['model/', 'schema/', 'runtime/', 'sources/', 'upstreams/'],
  replay: ['model/', 'ingest/duplicates.ts', 'engine/', 'runtime/clock.ts'],
  backtest: ['model/', 'engine/', 'replay/replay.ts', 'store/', 'runtime/'],
  systemd: [],
  // The dashboard talks to api/ over HTTP only: it imports nothing of the server.
  ui: [],
};
/** Modules at the root of src/ may import anything. */
const ROOT = new Set(['gateway.ts', 'cli.ts']);

const graph = (await madge('src', { fileExtensions: ['ts'], tsConfig: 'tsconfig.json' })).obj();
const folderOf = (file) => (file.includes('/') ? file.slice(0, file.indexOf('/')) : null);
const wrong = [];
for (const [file, deps] of Object.entries(graph)) {
  const from = folderOf(file);
  if (from === null) {
    if (!ROOT.has(file)) wrong.push(`src/${file}: only gateway.ts and cli.ts live at the root of src/`);
    continue;
  }
  const allowed = MAY_IMPORT[from];
  if (allowed === undefined) {
    wrong.push(`src/${file}: folder ${from}/ is not in scripts/check-layers.mjs (nor docs/architecture.md)`);
    continue;
  }
  for (const dep of deps) {
    const to = folderOf(dep);
    if (to === from) continue;
    if (to === null || !allowed.some((a) => (a.endsWith('/') ? dep.startsWith(a) : dep === a))) {
      wrong.push(`src/${file} imports src/${dep}: ${from}/ may import ${allowed.join(', ') || 'nothing'}`);
    }
  }
}
if (wrong.length > 0) {
  console.error(`${wrong.length} import(s) outside their layer (docs/architecture.md):\n${wrong.join('\n')}`);
  process.exit(1);
}
console.log(`layers: ${Object.keys(graph).length} modules, every import within its layer`);
