import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileTemplate, isValidTemplate } from '../../src/sources/topic-template.js';

describe('topic templates', () => {
  it('turns placeholders into + in the subscription filter', () => {
    assert.equal(compileTemplate('sensors/{device}/{metric}').filter, 'sensors/+/+');
    assert.equal(compileTemplate('zigbee2mqtt/{device}').filter, 'zigbee2mqtt/+');
    assert.equal(compileTemplate('tele/{device}/+/{metric}').filter, 'tele/+/+/+');
    assert.equal(compileTemplate('plant/{device}/#').filter, 'plant/+/#');
  });

  it('extracts device and metric from a matching topic', () => {
    const t = compileTemplate('sensors/{device}/{metric}');
    assert.deepEqual(t.match('sensors/boiler-1/temperature'), { device: 'boiler-1', metric: 'temperature' });
  });

  it('handles placeholders in any order and names only what the template names', () => {
    assert.deepEqual(compileTemplate('{metric}/of/{device}').match('hum/of/room-2'), {
      device: 'room-2',
      metric: 'hum',
    });
    assert.deepEqual(compileTemplate('zigbee2mqtt/{device}').match('zigbee2mqtt/kitchen'), {
      device: 'kitchen',
    });
    assert.deepEqual(compileTemplate('fixed/topic').match('fixed/topic'), {});
  });

  it('returns null for the wrong number of levels', () => {
    const t = compileTemplate('sensors/{device}/{metric}');
    assert.equal(t.match('sensors/boiler-1'), null);
    assert.equal(t.match('sensors/boiler-1/temperature/extra'), null);
    assert.equal(t.match('sensors'), null);
  });

  it('returns null when a fixed level differs', () => {
    const t = compileTemplate('sensors/{device}/{metric}');
    assert.equal(t.match('actuators/boiler-1/temperature'), null);
    assert.equal(t.match('Sensors/boiler-1/temperature'), null);
  });

  it('returns null for empty levels where a name or + is expected', () => {
    const t = compileTemplate('sensors/{device}/{metric}');
    assert.equal(t.match('sensors//temperature'), null);
    assert.equal(t.match('sensors/boiler-1/'), null);
    assert.equal(compileTemplate('a/+/{metric}').match('a//m'), null);
  });

  it('lets + levels match anything and name nothing', () => {
    assert.deepEqual(compileTemplate('tele/{device}/+/{metric}').match('tele/d1/SENSOR/temp'), {
      device: 'd1',
      metric: 'temp',
    });
  });

  it('lets a trailing # match the rest, including nothing', () => {
    const t = compileTemplate('plant/{device}/#');
    assert.deepEqual(t.match('plant/p1/a/b/c'), { device: 'p1' });
    assert.deepEqual(t.match('plant/p1/x'), { device: 'p1' });
    assert.deepEqual(t.match('plant/p1'), { device: 'p1' });
    assert.equal(t.match('plant'), null);
    assert.equal(t.match('other/p1/x'), null);
  });

  it('never matches $ topics', () => {
    assert.equal(compileTemplate('{device}/{metric}').match('$SYS/uptime'), null);
  });

  it('knows valid templates', () => {
    for (const t of [
      'sensors/{device}/{metric}',
      '{device}',
      'a/+/{metric}',
      'a/#',
      'a/{device}/#',
      'plain',
    ]) {
      assert.equal(isValidTemplate(t), true, t);
    }
  });

  it('refuses invalid templates', () => {
    for (const t of [
      '',
      'sensors/{device}/{device}', // the same placeholder twice
      'sensors/{dev}/{metric}', // unknown placeholder
      'sensors/x{device}/{metric}', // a placeholder not filling a whole level
      'sensors/{device}x',
      'a/#/{metric}', // # not last
      'a/b#',
      'a/b+',
      'a/{',
      'a/}',
    ]) {
      assert.equal(isValidTemplate(t), false, t);
      assert.throws(() => compileTemplate(t), /invalid topic template/, t);
    }
  });
});

/** The split-based match the templates had before they walked the topic: the reference. */
function matchBySplit(template: string, topic: string): { device?: string; metric?: string } | null {
  const levels = template.split('/');
  const deviceAt = levels.indexOf('{device}');
  const metricAt = levels.indexOf('{metric}');
  const multi = levels[levels.length - 1] === '#';
  const fixed = levels.length - (multi ? 1 : 0);
  if (topic.startsWith('$')) return null;
  const parts = topic.split('/');
  if (multi ? parts.length < fixed : parts.length !== fixed) return null;
  for (let i = 0; i < fixed; i++) {
    const l = levels[i] as string;
    const p = parts[i] as string;
    if (i === deviceAt || i === metricAt || l === '+') {
      if (p.length === 0) return null;
      continue;
    }
    if (l !== p) return null;
  }
  const named: { device?: string; metric?: string } = {};
  if (deviceAt >= 0) named.device = parts[deviceAt];
  if (metricAt >= 0) named.metric = parts[metricAt];
  return named;
}

describe('topic template match, against the split-based definition', () => {
  const template = fc
    .tuple(
      fc.array(fc.constantFrom('{device}', '{metric}', '+', 'a', 'b', ''), { minLength: 0, maxLength: 4 }),
      fc.boolean(),
    )
    .map(([ls, hash]) => (hash ? [...ls, '#'] : ls).join('/'))
    .filter(isValidTemplate);
  const topic = fc
    .array(fc.constantFrom('a', 'b', 'dev-1', '', '$x', 'a$'), { minLength: 1, maxLength: 6 })
    .map((ls) => ls.join('/'));

  it('agrees on every valid template and topic', () => {
    let matched = 0;
    fc.assert(
      fc.property(template, topic, (tpl, t) => {
        const expected = matchBySplit(tpl, t);
        if (expected) matched++;
        assert.deepEqual(compileTemplate(tpl).match(t), expected, `${tpl} on ${t}`);
      }),
      { numRuns: 20_000 },
    );
    assert.ok(matched > 500, `only ${matched} topics matched: the property would test little`);
  });
});
