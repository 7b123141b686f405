import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type SocatPty, startSocatPty } from '../../helpers/socat-pty.js';
import { waitFor } from '../../upstreams/wait.js';
import { encode } from './encode.js';
import { counterValue, modbusConfig, modbusRig, profile } from './rig.js';
import { RtuResponder } from './rtu-responder.js';

const sensor = profile({
  profile: 'th-sensor',
  registers: [
    { metric: 'temperature', table: 'input', address: 1, type: 'int16', scale: 0.1, unit: '°C' },
    { metric: 'humidity', table: 'input', address: 2, type: 'int16', scale: 0.1, unit: '%RH' },
    { metric: 'power', table: 'input', address: 20, type: 'float32', unit: 'W' },
  ],
});

describe('modbus source over RTU on a pty pair', () => {
  let pty: SocatPty;
  let responder: RtuResponder;
  before(async () => {
    pty = await startSocatPty();
    responder = new RtuResponder(pty.b);
    await responder.open();
  });
  after(async () => {
    await responder?.close();
    await pty?.close();
  });

  it('three unit ids share one bus: requests never overlap and every device is read', async () => {
    for (const unit of [1, 2, 3]) {
      responder.set(unit, 1, [...encode('int16', 200 + unit), ...encode('int16', 400 + unit)]);
      responder.set(unit, 20, encode('float32', 100 * unit + 0.5));
    }
    const rig = modbusRig(
      modbusConfig({
        connection: { path: pty.a, baudRate: 9600 },
        interval: '30ms',
        timeout: '300ms',
        interFrameGap: '5ms',
        devices: [
          { id: 'th-1', unitId: 1, profile: 'th-sensor' },
          { id: 'th-2', unitId: 2, profile: 'th-sensor' },
          { id: 'th-3', unitId: 3, profile: 'th-sensor' },
          // Not on the bus: its timeouts must not stall the others.
          { id: 'ghost', unitId: 9, profile: 'th-sensor', timeout: '100ms', retries: 0 },
        ],
      }),
      [sensor],
    );
    try {
      await rig.source.start();
      await waitFor(
        'readings from all three devices, several times',
        () => ['th-1', 'th-2', 'th-3'].every((d) => rig.of(d, 'power').length >= 4),
        8000,
      );
      for (const unit of [1, 2, 3]) {
        assert.equal(rig.latest(`th-${unit}`, 'temperature'), 20 + unit / 10);
        assert.equal(rig.latest(`th-${unit}`, 'humidity'), 40 + unit / 10);
        assert.equal(rig.latest(`th-${unit}`, 'power'), 100 * unit + 0.5);
      }
      // Strictly sequential: every request arrived after the previous one was answered.
      assert.equal(responder.overlaps, 0);
      const answered = responder.log.filter((e) => e.unit !== 9);
      for (let i = 1; i < responder.log.length; i++) {
        const prev = responder.log[i - 1];
        const cur = responder.log[i];
        if (prev?.respondedAt != null && cur)
          assert.ok(cur.receivedAt >= prev.respondedAt, `frame ${i} overlaps`);
      }
      // Two requests per poll (registers 1–2 and 20–21 are 18 apart), for every unit.
      assert.ok(
        answered.every((e) => e.fc === 4 && ((e.address === 1 && e.count === 2) || e.address === 20)),
      );
      assert.ok(
        responder.log.some((e) => e.unit === 9),
        'the ghost was asked',
      );
      const status = rig.source.status();
      assert.equal(status.devices?.['ghost']?.state, 'offline');
      assert.match(status.devices?.['ghost']?.lastError ?? '', /no response within 100 ms/);
      assert.equal(status.state, 'connected');
      assert.ok(
        (await counterValue(rig.metrics, 'tidegate_modbus_requests_total', { outcome: 'timeout' })) >= 1,
      );
    } finally {
      await rig.close();
    }
  });

  it('a CRC error marks the device offline; the pty unplugged and back resumes reading', async () => {
    responder.corrupt.add(2);
    const rig = modbusRig(
      modbusConfig({
        connection: { path: pty.a },
        interval: '30ms',
        timeout: '200ms',
        retries: 1,
        devices: [
          { id: 'th-1', unitId: 1, profile: 'th-sensor' },
          { id: 'th-2', unitId: 2, profile: 'th-sensor' },
        ],
      }),
      [sensor],
    );
    try {
      await rig.source.start();
      await waitFor('th-1 read', () => rig.of('th-1').length >= 3, 5000);
      await waitFor('th-2 offline with a CRC error', () =>
        /CRC/.test(rig.source.status().devices?.['th-2']?.lastError ?? ''),
      );
      assert.equal(rig.of('th-2').length, 0);
      assert.ok((await counterValue(rig.metrics, 'tidegate_modbus_requests_total', { outcome: 'crc' })) >= 2);
      responder.corrupt.delete(2);
      await waitFor('th-2 back', () => rig.of('th-2').length > 0, 3000);

      // Unplug: the pty pair disappears, then comes back at the same path.
      await responder.close();
      await pty.stop();
      await waitFor('th-1 offline', () => rig.source.status().devices?.['th-1']?.state === 'offline', 5000);
      const before = rig.of('th-1').length;
      await pty.restart();
      await responder.open();
      await waitFor('readings resume after replug', () => rig.of('th-1').length > before + 2, 10_000);
      assert.equal(rig.source.status().devices?.['th-1']?.state, 'connected');
    } finally {
      await rig.close();
    }
  });
});
