import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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
