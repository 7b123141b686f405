// Builds the dashboard (src/ui) into dist/ui, as `npm run build` runs it after tsc: esbuild bundles
// src/ui/main.ts (Preact, htm, uPlot, yaml) and its CSS into assets/ with content-hashed names,
// writes index.html naming them, and precompresses every file as .br and .gz beside it. It fails
// when the JavaScript is over its budget (150 KB gzipped, issue 17), and prints the sizes.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { build } from 'esbuild';

export const JS_BUDGET_GZIP = 150 * 1024;

const out = 'dist/ui';
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });

const result = await build({
  entryPoints: { app: 'src/ui/main.ts' },
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  outdir: join(out, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

const assets = readdirSync(join(out, 'assets'));
const script = assets.find((f) => f.endsWith('.js'));
const style = assets.find((f) => f.endsWith('.css'));
if (!script || !style)
  throw new Error(`build-ui: expected a .js and a .css in ${out}/assets, found ${assets}`);

const icon = readFileSync('src/ui/icon.svg');
const iconName = `icon-${createHash('sha256').update(icon).digest('hex').slice(0, 8)}.svg`;
writeFileSync(join(out, 'assets', iconName), icon);

const html = readFileSync('src/ui/index.html', 'utf8')
  .replace('%SCRIPT%', `/assets/${script}`)
  .replace('%STYLE%', `/assets/${style}`)
  .replace('%ICON%', `/assets/${iconName}`);
if (html.includes('%')) throw new Error('build-ui: a placeholder of src/ui/index.html was left');
writeFileSync(join(out, 'index.html'), html);

const sizes = [];
for (const name of ['index.html', ...readdirSync(join(out, 'assets')).map((f) => `assets/${f}`)]) {
  const path = join(out, name);
  const body = readFileSync(path);
  const gz = gzipSync(body, { level: 9 });
  const br = brotliCompressSync(body, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: body.length },
  });
  writeFileSync(`${path}.gz`, gz);
  writeFileSync(`${path}.br`, br);
  sizes.push({ name, bytes: body.length, gzip: gz.length, brotli: br.length });
}

const js = sizes.filter((s) => s.name.endsWith('.js'));
const jsGzip = js.reduce((n, s) => n + s.gzip, 0);
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
for (const s of sizes)
  console.log(`ui: ${s.name} ${kb(s.bytes)} (gzip ${kb(s.gzip)}, brotli ${kb(s.brotli)})`);
if (result.metafile && process.env.UI_BUILD_INPUTS) {
  const inputs = Object.values(result.metafile.outputs).find((o) => o.entryPoint)?.inputs ?? {};
  const byPackage = {};
  for (const [file, { bytesInOutput }] of Object.entries(inputs)) {
    const pkg = file.includes('node_modules/') ? file.split('node_modules/')[1].split('/')[0] : 'src/ui';
    byPackage[pkg] = (byPackage[pkg] ?? 0) + bytesInOutput;
  }
  console.log('ui: minified bytes by package', byPackage);
}
console.log(`ui: JavaScript ${kb(jsGzip)} gzipped in all (budget ${kb(JS_BUDGET_GZIP)})`);
if (jsGzip > JS_BUDGET_GZIP) {
  console.error(
    `build-ui: the dashboard's JavaScript is over its budget: ${kb(jsGzip)} > ${kb(JS_BUDGET_GZIP)}`,
  );
  process.exit(1);
}
