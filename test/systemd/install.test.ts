import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeTempDir } from '../helpers/tmp.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const INSTALL = join(ROOT, 'systemd', 'install.sh');

function install(...args: string[]): string {
  const r = spawnSync('bash', [INSTALL, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `install.sh ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/**
 * Every path under root with its mode, and for files size, mtime and content hash: what "changes
 * nothing" means. (A directory's mtime moves whenever a temporary file comes and goes in it.)
 */
function manifest(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const st = lstatSync(path);
      let id = st.mode.toString(8);
      if (st.isFile())
        id += ` ${st.size} ${st.mtimeMs} ${createHash('sha1').update(readFileSync(path)).digest('hex')}`;
      if (st.isSymbolicLink()) id += ` ${st.mtimeMs}`;
      out.set(relative(root, path), id);
      if (st.isDirectory()) walk(path);
    }
  };
  walk(root);
  return out;
}

describe('systemd/install.sh in a throwaway root', () => {
  const built = existsSync(join(ROOT, 'dist', 'cli.js'));
  it('installs, is idempotent, keeps an edited config, uninstalls', {
    skip: !built && 'no dist/: run npm run build',
  }, () => {
    const tmp = makeTempDir();
    try {
      const root = tmp.path;
      install('--prefix', root);
      for (const f of [
        'opt/tidegate/dist/cli.js',
        'opt/tidegate/package.json',
        'opt/tidegate/package-lock.json',
        'opt/tidegate/node_modules/better-sqlite3/package.json',
        'opt/tidegate/systemd/notify-exec',
        'opt/tidegate/devices',
        'etc/tidegate/gateway.yaml',
        'etc/tidegate/rules.yaml',
        'etc/systemd/system/tidegate.service',
      ]) {
        assert.ok(existsSync(join(root, f)), `${f} installed`);
      }
      assert.equal(lstatSync(join(root, 'opt/tidegate/systemd/notify-exec')).mode & 0o111, 0o111);
      assert.ok(!existsSync(join(root, 'opt/tidegate/node_modules/typescript')), 'no dev dependencies');
      assert.equal(
        readFileSync(join(root, 'etc/systemd/system/tidegate.service'), 'utf8'),
        readFileSync(join(ROOT, 'systemd/tidegate.service'), 'utf8'),
      );
      const gatewayYaml = readFileSync(join(root, 'etc/tidegate/gateway.yaml'), 'utf8');
      assert.match(gatewayYaml, /^rules: \/etc\/tidegate\/rules\.yaml/m);
      assert.match(gatewayYaml, /^devicesDir: \/opt\/tidegate\/devices/m);

      // The installed build runs with the installed production dependencies alone.
      const version = spawnSync(process.execPath, [join(root, 'opt/tidegate/dist/cli.js'), '--version'], {
        encoding: 'utf8',
      });
      assert.equal(version.status, 0, version.stderr);

      const first = manifest(root);
      const again = install('--prefix', root);
      assert.match(again, /is up to date/);
      assert.deepEqual(manifest(root), first, 'a second run changes nothing');

      // An edited config survives a reinstall.
      const edited = `${gatewayYaml}\n# mine\n`;
      writeFileSync(join(root, 'etc/tidegate/gateway.yaml'), edited);
      assert.match(install('--prefix', root), /kept your .*gateway\.yaml/);
      assert.equal(readFileSync(join(root, 'etc/tidegate/gateway.yaml'), 'utf8'), edited);

      // Uninstall keeps configuration and data; --purge removes them.
      spawnSync('mkdir', ['-p', join(root, 'var/lib/tidegate')]);
      writeFileSync(join(root, 'var/lib/tidegate/tidegate.db'), 'data');
      install('--prefix', root, '--uninstall');
      assert.ok(!existsSync(join(root, 'opt/tidegate')));
      assert.ok(!existsSync(join(root, 'etc/systemd/system/tidegate.service')));
      assert.equal(readFileSync(join(root, 'etc/tidegate/gateway.yaml'), 'utf8'), edited);
      assert.ok(existsSync(join(root, 'var/lib/tidegate/tidegate.db')));
      install('--prefix', root, '--uninstall');
      install('--prefix', root, '--uninstall', '--purge');
      assert.ok(!existsSync(join(root, 'etc/tidegate')));
      assert.ok(!existsSync(join(root, 'var/lib/tidegate')));
    } finally {
      tmp.remove();
    }
  });

  it('refuses unknown options', () => {
    const r = spawnSync('bash', [INSTALL, '--bogus'], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /unknown option --bogus/);
  });
});
