import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CounterTally, Metrics } from '../../src/runtime/metrics.js';
import { parseMetrics } from '../helpers/prometheus.js';

describe('CounterTally', () => {
  it('adds its counts to the counter at each scrape, each count once', async () => {
    const metrics = new Metrics();
    const tally = new CounterTally(metrics, metrics.readingsIngested, 'source');
    const scrape = async () => parseMetrics(await metrics.registry.metrics());
    tally.add('mqtt', 50);
    tally.add('mqtt', 1);
    tally.add('serial', 3);
    let m = await scrape();
    assert.equal(m.get('tidegate_readings_ingested_total{source="mqtt"}'), 51);
    assert.equal(m.get('tidegate_readings_ingested_total{source="serial"}'), 3);
    m = await scrape();
    assert.equal(
      m.get('tidegate_readings_ingested_total{source="mqtt"}'),
      51,
      'counted again at a second scrape',
    );
    tally.add('serial', 2);
    metrics.readingsIngested.inc({ source: 'serial' }, 10); // counting beside the tally adds up
    m = await scrape();
    assert.equal(m.get('tidegate_readings_ingested_total{source="serial"}'), 15);
    // The counter read alone (not the whole registry) sees the tally too.
    tally.add('mqtt', 9);
    const { values } = await metrics.readingsIngested.get();
    assert.equal(values.find((v) => v.labels.source === 'mqtt')?.value, 60);
  });
});
