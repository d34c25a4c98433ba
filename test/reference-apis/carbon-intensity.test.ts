import { statSync } from 'node:fs';

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import {
  apiTime, CarbonIntensityClient, missingRuns, parseRegionalIntensity, SqliteIntensityStore,
} from '../../src/reference-apis/carbon-intensity.ts';
import {
  generateSample, loadSample, readSample, SAMPLE_FILE, SAMPLE_FROM, SAMPLE_TO, syntheticIntensity,
} from '../../src/reference-apis/intensity-sample.ts';
import { TestTrustFramework } from '../support/trust-framework.ts';
import { startFakeCarbonIntensityApi, type FakeCarbonIntensityApi } from './fake-carbon-intensity.ts';

const HALF_HOUR = 30 * 60_000;
const DAY = 86_400_000;

describe('the Carbon Intensity API client, against a local server that plays the API', () => {
  let tf: TestTrustFramework;
  let fake: FakeCarbonIntensityApi;
  let store: SqliteIntensityStore;
  let client: CarbonIntensityClient;

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    fake = await startFakeCarbonIntensityApi(tf.serverTls);
  });
  afterAll(async () => {
    client?.close();
    await fake?.close();
  });
  beforeEach(() => {
    store = new SqliteIntensityStore(openSqliteDatabase(':memory:'));
    client?.close();
    client = new CarbonIntensityClient({ store, baseUrl: fake.url, ca: tf.serverCa });
    fake.calls.length = 0;
    fake.drop.clear();
    fake.semantics = 'start';
    fake.down = false;
  });

  it('fetches two months in calls of under 14 days, accepting both answer shapes, and stores every half-hour', async () => {
    const from = new Date('2025-01-01T00:00:00Z');
    const to = new Date('2025-03-01T00:00:00Z');
    await client.ensure('sw1a', from, to);
    expect(fake.calls.length).toBeGreaterThanOrEqual(5);
    for (const call of fake.calls) {
      expect(call.status).toBe(200);
      expect(call.to.getTime() - call.from.getTime()).toBeLessThan(14 * DAY);
      expect(call.outcode).toBe('SW1A');
    }
    expect(new Set(fake.calls.map((c) => c.shape))).toEqual(new Set(['array', 'object']));
    const stored = await store.range('SW1A', from, to);
    expect(stored.size).toBe((to.getTime() - from.getTime()) / HALF_HOUR);
    for (let t = from.getTime(); t < to.getTime(); t += HALF_HOUR) {
      expect(stored.get(t)).toEqual({ forecast: syntheticIntensity('SW1A', new Date(t)), source: 'api' });
    }
    expect(store.region('SW1A')).toEqual({ regionId: 13, shortname: 'London' });

    // Everything is stored: asking again calls nothing.
    fake.calls.length = 0;
    await client.ensure('SW1A', from, to);
    expect(fake.calls).toHaveLength(0);
  });

  it('fetches only what is missing', async () => {
    const from = new Date('2025-04-01T00:00:00Z');
    const to = new Date('2025-05-01T00:00:00Z');
    await client.ensure('M1', from, new Date('2025-04-20T00:00:00Z'));
    fake.calls.length = 0;
    await client.ensure('M1', from, to);
    expect(fake.calls).toHaveLength(1);
    // The first call overlapped by half an hour: 2025-04-20T00:00Z is stored already.
    expect(fake.calls[0].from.getTime()).toBe(new Date('2025-04-20T00:00:00Z').getTime());
    expect(fake.calls[0].to.getTime()).toBe(new Date('2025-05-01T00:30:00Z').getTime());
    expect((await store.range('M1', from, to)).size).toBe(30 * 48);
  });

  it('covers the range whichever half-hour the API counts from', async () => {
    fake.semantics = 'end';
    const from = new Date('2025-02-01T00:00:00Z');
    const to = new Date('2025-02-15T00:00:00Z');
    await client.ensure('EH1', from, to);
    expect((await store.range('EH1', from, to)).size).toBe(14 * 48);
  });

  it('fills a gap of up to two hours by interpolation and leaves a longer one missing', async () => {
    const from = new Date('2025-06-01T00:00:00Z');
    const to = new Date('2025-06-08T00:00:00Z');
    const short = Date.UTC(2025, 5, 2, 10);
    const long = Date.UTC(2025, 5, 4, 10);
    for (let i = 0; i < 3; i++) fake.drop.add(short + i * HALF_HOUR);
    for (let i = 0; i < 6; i++) fake.drop.add(long + i * HALF_HOUR);
    await client.ensure('BS1', from, to);
    const stored = await store.range('BS1', from, to);
    expect(stored.size).toBe(7 * 48 - 6);
    const before = syntheticIntensity('BS1', new Date(short - HALF_HOUR));
    const after = syntheticIntensity('BS1', new Date(short + 3 * HALF_HOUR));
    expect(stored.get(short)!.source).toBe('interpolated');
    expect(stored.get(short + HALF_HOUR)!.forecast).toBeCloseTo(before + (after - before) / 2, 1);
    expect(stored.has(long)).toBe(false);
  });

  it('reports the API being down, and fetches in the background once at a time', async () => {
    fake.down = true;
    await expect(client.ensure('CF10', new Date('2025-01-01T00:00:00Z'), new Date('2025-01-02T00:00:00Z'))).rejects.toThrow(/answered 503/);
    fake.down = false;
    fake.calls.length = 0;
    const from = new Date('2025-07-01T00:00:00Z');
    const to = new Date('2025-08-01T00:00:00Z');
    client.ensureInBackground('CF10', from, to);
    client.ensureInBackground('CF10', from, to);
    await client.settled();
    expect(fake.calls).toHaveLength(3);
    expect((await store.range('CF10', from, to)).size).toBe(31 * 48);
  });

  it('never asks for 14 days or more in one call', async () => {
    await expect(client.fetchPeriods('SW1A', new Date('2025-01-01T00:00:00Z'), new Date('2025-01-15T00:00:00Z'))).rejects.toThrow(/less than 14 days/);
    expect(fake.calls).toHaveLength(0);
  });
});

describe('the regional answer and the store', () => {
  it('parses data as an array or as an object, skipping periods without a forecast', () => {
    const periods = [
      { from: '2025-01-01T00:00Z', to: '2025-01-01T00:30Z', intensity: { forecast: 120, actual: null, index: 'moderate' } },
      { from: '2025-01-01T00:30Z', to: '2025-01-01T01:00Z', intensity: { forecast: null, index: 'moderate' } },
    ];
    const region = { regionid: 13, shortname: 'London', postcode: 'SW1A', data: periods };
    for (const answer of [{ data: [region] }, { data: region }]) {
      const parsed = parseRegionalIntensity(answer);
      expect(parsed.region).toEqual({ regionId: 13, shortname: 'London' });
      expect(parsed.periods).toEqual([{ start: new Date('2025-01-01T00:00:00Z'), forecast: 120 }]);
    }
    expect(() => parseRegionalIntensity({ error: { message: 'x' } })).toThrow(/no data/);
    expect(apiTime(new Date('2025-01-01T10:30:00Z'))).toBe('2025-01-01T10:30Z');
  });

  it('splits missing half-hours into runs of bounded length', () => {
    const from = new Date('2025-01-01T00:00:00Z');
    const to = new Date('2025-01-31T00:00:00Z');
    const have = new Set([from.getTime() + 10 * DAY]);
    const runs = missingRuns(have, from, to, 13 * DAY);
    expect(runs.map((r) => [r.from.toISOString(), r.to.toISOString()])).toEqual([
      ['2025-01-01T00:00:00.000Z', '2025-01-11T00:00:00.000Z'],
      ['2025-01-11T00:30:00.000Z', '2025-01-24T00:30:00.000Z'],
      ['2025-01-24T00:30:00.000Z', '2025-01-31T00:00:00.000Z'],
    ]);
  });

  it('keeps data from the API over the sample, and never the reverse', async () => {
    const store = new SqliteIntensityStore(openSqliteDatabase(':memory:'));
    const t = new Date('2025-01-01T00:00:00Z');
    await store.put('SW1A', [{ start: t, forecast: 100 }], 'sample');
    await store.put('SW1A', [{ start: t, forecast: 150 }], 'api');
    await store.put('SW1A', [{ start: t, forecast: 90 }], 'sample');
    await store.put('SW1A', [{ start: t, forecast: 95 }], 'interpolated');
    expect((await store.range('SW1A', t, new Date(t.getTime() + HALF_HOUR))).get(t.getTime())).toEqual({ forecast: 150, source: 'api' });
  });
});

describe('the bundled synthetic sample', () => {
  it('is small, covers 18 months for its outcodes, and is exactly what the generator writes', async () => {
    expect(statSync(SAMPLE_FILE).size).toBeLessThan(1024 * 1024);
    const sample = readSample();
    expect(sample.notice).toMatch(/SYNTHETIC/);
    expect(sample).toEqual(generateSample());
    expect(new Date(sample.from)).toEqual(SAMPLE_FROM);
    expect(new Date(sample.to)).toEqual(SAMPLE_TO);
    for (const values of Object.values(sample.forecast)) expect(values).toHaveLength((SAMPLE_TO.getTime() - SAMPLE_FROM.getTime()) / HALF_HOUR);

    const store = new SqliteIntensityStore(openSqliteDatabase(':memory:'));
    await loadSample(store, sample);
    const january = await store.range('EH1', new Date('2025-01-01T00:00:00Z'), new Date('2025-02-01T00:00:00Z'));
    expect(january.size).toBe(31 * 48);
    expect([...january.values()].every((v) => v.source === 'sample')).toBe(true);
  });
});
