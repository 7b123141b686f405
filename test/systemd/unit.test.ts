import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const UNIT = join(ROOT, 'systemd', 'tidegate.service');
const ANALYZE = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;
const NO_ANALYZE = 'systemd-analyze is not installed (apt-get install systemd); CI installs it';

/** The unit's Key=value lines (later ones win, as in systemd, except for lists we don't need). */
function directives(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of readFileSync(UNIT, 'utf8').split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1] as string, [...(out.get(m[1] as string) ?? []), m[2] as string]);
  }
  return out;
}

describe('systemd/tidegate.service', () => {
  it('runs the built CLI as its own user with the contract settings', () => {
    const d = directives();
    const one = (k: string) => d.get(k)?.at(-1);
    assert.match(
      one('ExecStart') ?? '',
      /\/usr\/bin\/node --max-old-space-size=\d+ \/opt\/tidegate\/dist\/cli\.js run --config \/etc\/tidegate\/gateway\.yaml$/,
    );
    assert.equal(one('User'), 'tidegate');
    assert.equal(one('SupplementaryGroups'), 'dialout');
    assert.equal(one('StateDirectory'), 'tidegate');
    assert.equal(one('ConfigurationDirectory'), 'tidegate');
    assert.equal(one('WorkingDirectory'), '/var/lib/tidegate');
    assert.ok(d.get('Environment')?.includes('TIDEGATE_STORE__PATH=/var/lib/tidegate/tidegate.db'));
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('RestartPreventExitStatus'), '74 78');
    assert.equal(one('Type'), 'notify');
    assert.equal(one('NotifyAccess'), 'main');
    assert.ok(Number.parseInt(one('WatchdogSec') ?? '', 10) > 0);
    assert.equal(d.get('MemoryDenyWriteExecute'), undefined, "V8's JIT needs W+X memory");
  });

  it('passes systemd-analyze verify and rates ≤ 1.5 in systemd-analyze security', {
    skip: !ANALYZE && NO_ANALYZE,
  }, () => {
    const r = spawnSync('bash', [join(ROOT, 'systemd', 'verify.sh'), UNIT], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /systemd-analyze verify tidegate\.service: OK/);
    const score = Number(/exposure ([0-9.]+)/.exec(r.stdout)?.[1]);
    assert.ok(score <= 1.5, `exposure ${score}`);
  });

  it('security rating parsed straight from systemd-analyze', { skip: !ANALYZE && NO_ANALYZE }, () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT], {
      encoding: 'utf8',
    });
    const m = /Overall exposure level for tidegate\.service: ([0-9.]+) (\w+)/.exec(`${r.stdout}${r.stderr}`);
    assert.ok(m, `no exposure line in:\n${r.stdout}${r.stderr}`);
    assert.ok(Number(m[1]) <= 1.5, `exposure ${m[1]}`);
    assert.equal(m[2], 'OK');
  });
});
