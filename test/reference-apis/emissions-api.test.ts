import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { CarbonIntensityClient, CARBON_INTENSITY_SOURCE, SqliteIntensityStore } from '../../src/reference-apis/carbon-intensity.ts';
import { emissionsApi, emissionsLicenses, GAS_EMISSION_FACTOR, storeConsumptionSource } from '../../src/reference-apis/emissions-api.ts';
import { syntheticIntensity } from '../../src/reference-apis/intensity-sample.ts';
import { addMonths, halfHoursIn, isoSeconds, monthsIn, startOfMonth } from '../../src/reference-apis/months.ts';
import { SqliteReadingStore, defaultTakenAt, type Reading } from '../../src/reference-apis/readings-store.ts';
import { synthesiseReadings } from '../../src/reference-apis/synthetic-readings.ts';
import { permissionGuard, type PermissionGuard } from '../../src/resource-server/guard.ts';
import { listenResourceServer, type RunningResourceServer } from '../../src/resource-server/listener.ts';
import { oauthClient, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';
import { call, grant, guardOptions, LICENSE_EMISSIONS } from '../resource-server/support.ts';
import { startFakeCarbonIntensityApi, type FakeCarbonIntensityApi } from './fake-carbon-intensity.ts';

const HALF_HOUR = 30 * 60_000;
const BAKERY = { email: 'ops@bakery.example', password: 'sourdough since dawn', organisation: 'Riverside Bakery Ltd' };
const LAUNDRY = { email: 'ops@laundry.example', password: 'clean sheets every day', organisation: 'Bright Laundry Ltd' };
const KIOSK = { email: 'ops@kiosk.example', password: 'newspapers and milk', organisation: 'Corner Kiosk Ltd' };

interface Entry { type: string; from: string; to: string; takenAt: string; emissions: { value: number; unitCode: string } }

/** n constant readings of `kWh` from `from`. */
function constant(from: Date, to: Date, kWh: number): Reading[] {
  const readings: Reading[] = [];
  for (let t = from.getTime(); t < to.getTime(); t += HALF_HOUR) readings.push({ start: new Date(t), kWh, takenAt: defaultTakenAt(new Date(t)) });
  return readings;
}

describe('the reference emissions API, read by a bank with its token from the CAP', () => {
  let tf: TestTrustFramework;
  let server: TestServer;
  let fake: FakeCarbonIntensityApi;
  let bankCredentials: ClientCredentials;
  let bank: OAuthClient;
  let readings: SqliteReadingStore;
  let intensity: SqliteIntensityStore;
  let intensityClient: CarbonIntensityClient;
  let guard: PermissionGuard;
  let api: RunningResourceServer;
  const tokens: Record<string, string> = {};
  const periodTo = startOfMonth(new Date());
  const periodFrom = addMonths(periodTo, -12);
  const day = (d: Date) => isoSeconds(d).slice(0, 10);

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    fake = await startFakeCarbonIntensityApi(tf.serverTls);
    bankCredentials = await tf.member('https://directory.example/a/green-loans', ['financial-service-provider'], 'Example Bank plc');
    const apiCredentials = await tf.member('https://directory.example/a/emissions-api', ['carbon-accounting-provider'], 'Demo Carbon Accounting Ltd');
    server = await startTestServer(tf, { OPERATOR_NAME: 'Demo Carbon Accounting Ltd', RESOURCE_SERVERS: apiCredentials.applicationUrl });
    await server.smeAccounts.addSme({ ...BAKERY, meters: ['1012345678901:SW1A', '1098765432109:M1', 'gas:1234567:SW1A'] });
    await server.smeAccounts.addSme({ ...LAUNDRY, meters: ['1011111111111:EH1'] });
    await server.smeAccounts.addSme({ ...KIOSK, meters: ['1022222222222:BS1', 'gas:7654321:BS1'] });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    for (const [name, sme] of Object.entries({ BAKERY, LAUNDRY, KIOSK })) tokens[name] = (await grant(server, tf, bank, sme, LICENSE_EMISSIONS)).access_token;

    readings = new SqliteReadingStore(openSqliteDatabase(':memory:'));
    await readings.put('1012345678901', 'import', synthesiseReadings({ from: periodFrom, months: 12, profile: 'bakery', seed: 1 }));
    await readings.put('1098765432109', 'import', synthesiseReadings({ from: periodFrom, months: 12, profile: 'shop', seed: 2 }));
    await readings.put('1234567', 'import', synthesiseReadings({ from: periodFrom, months: 12, profile: 'bakery', fuel: 'gas', seed: 3 }));
    // The laundry's last month has not arrived yet.
    await readings.put('1011111111111', 'import', synthesiseReadings({ from: periodFrom, months: 11, profile: 'office', seed: 4 }));
    // The kiosk: constant readings against a constant intensity, for sums worked out by hand.
    await readings.put('1022222222222', 'import', constant(periodFrom, periodTo, 1));
    await readings.put('7654321', 'import', constant(periodFrom, periodTo, 2));

    intensity = new SqliteIntensityStore(openSqliteDatabase(':memory:'));
    await intensity.put('BS1', constant(periodFrom, periodTo, 0).map((r) => ({ start: r.start, forecast: 200 })), 'api');
    intensityClient = new CarbonIntensityClient({ store: intensity, baseUrl: fake.url, ca: tf.serverCa });
    guard = permissionGuard(guardOptions(tf, server, apiCredentials, emissionsLicenses(), { cacheSeconds: 30 }));
    api = await listenResourceServer(emissionsApi({
      guard, consumption: storeConsumptionSource(readings), intensity, intensityClient, origin: apiCredentials.applicationUrl, retryAfterSeconds: 5,
    }), { ...tf.serverTls, clientCa: tf.clientCa });
  });
  afterAll(async () => {
    await api?.close();
    guard?.close();
    intensityClient?.close();
    await fake?.close();
    await server?.close();
  });

  const get = (who: string, query = '') => call(`${api.url}/emissions${query}`, { credentials: bankCredentials, serverCa: tf.serverCa, token: tokens[who] });

  it('answers 202 until the regional intensity is fetched, in calls of under 14 days, then the monthly sums', async () => {
    const first = await get('BAKERY');
    expect(first.status).toBe(202);
    expect(first.headers.get('retry-after')).toBe('5');
    const pending = first.json.pendingMonths as Array<{ month: string; waitingFor: string[] }>;
    expect(pending).toHaveLength(12);
    expect(pending[0].waitingFor).toEqual(expect.arrayContaining(['carbon intensity for SW1A', 'carbon intensity for M1']));

    await intensityClient.settled();
    expect(fake.calls.length).toBeGreaterThan(0);
    for (const c of fake.calls) {
      expect(c.status).toBe(200);
      expect(c.to.getTime() - c.from.getTime()).toBeLessThan(14 * 86_400_000);
    }
    expect(new Set(fake.calls.map((c) => c.shape)).size).toBe(2);

    const res = await get('BAKERY');
    expect(res.status).toBe(200);
    const data = res.json.data as Entry[];
    expect(data).toHaveLength(24);
    // Worked out here from the stored readings and the intensity model the fake API serves.
    for (const month of monthsIn(periodFrom, periodTo)) {
      const end = addMonths(month, 1);
      let electricity = 0;
      for (const [meter, outcode] of [['1012345678901', 'SW1A'], ['1098765432109', 'M1']]) {
        for (const r of await readings.range(meter, 'import', month, end)) electricity += (r.kWh * syntheticIntensity(outcode, r.start)) / 1000;
      }
      let gas = 0;
      for (const r of await readings.range('1234567', 'import', month, end)) gas += r.kWh * GAS_EMISSION_FACTOR.kgCO2ePerKWh;
      const entries = data.filter((e) => e.from === isoSeconds(month));
      expect(entries.map((e) => e.type)).toEqual(['electricity', 'gas']);
      expect(entries[0].to).toBe(isoSeconds(end));
      expect(entries[0].emissions.unitCode).toBe('KGM');
      expect(Math.abs(entries[0].emissions.value - electricity)).toBeLessThan(0.001);
      expect(Math.abs(entries[1].emissions.value - gas)).toBeLessThan(0.001);
      // The latest reading of the month was reported half an hour after the month ended.
      expect(entries[0].takenAt).toBe(isoSeconds(new Date(end.getTime() + HALF_HOUR)));
    }
    const sources = res.json.sources as Array<Record<string, string>>;
    expect(sources).toEqual(expect.arrayContaining([expect.objectContaining({ name: CARBON_INTENSITY_SOURCE.name, license: 'CC BY 4.0' })]));
    expect(sources.some((s) => s.name === GAS_EMISSION_FACTOR.source)).toBe(true);
    expect(res.json.provenance).toMatchObject({ signed: false, to: bankCredentials.applicationUrl, license: LICENSE_EMISSIONS });
  });

  it('sums whole months exactly: hand-computed totals for constant readings and intensity', async () => {
    const res = await get('KIOSK');
    expect(res.status).toBe(200);
    const data = res.json.data as Entry[];
    expect(data).toHaveLength(24);
    for (const month of monthsIn(periodFrom, periodTo)) {
      const halfHours = halfHoursIn(month, addMonths(month, 1)); // 1344, 1392, 1440 or 1488
      const [electricity, gas] = data.filter((e) => e.from === isoSeconds(month));
      // 1 kWh each half-hour at 200 gCO2/kWh is 0.2 kg; 2 kWh of gas at 0.1829 kg/kWh is 0.3658 kg.
      // Values are served to the gram (three decimals of a kilogram).
      expect(electricity.emissions.value).toBeCloseTo(halfHours * 0.2, 3);
      expect(gas.emissions.value).toBeCloseTo(halfHours * 0.3658, 3);
    }
    const thirtyOne = data.find((e) => e.type === 'electricity' && new Date(e.from).getUTCMonth() === 0)!;
    expect(thirtyOne.emissions.value).toBe(297.6);
  });

  it('keeps each half-hour in its own month at the boundaries', async () => {
    // A spike in the last half-hour of one month and the first of the next.
    const month = addMonths(periodFrom, 4);
    const previous = addMonths(month, -1);
    const next = addMonths(month, 1);
    await readings.put('1022222222222', 'import', [
      { start: new Date(month.getTime() - HALF_HOUR), kWh: 1001, takenAt: defaultTakenAt(new Date(month.getTime() - HALF_HOUR)) },
      { start: month, kWh: 2001, takenAt: defaultTakenAt(month) },
    ]);
    try {
      const res = await get('KIOSK', `?from=${day(previous)}&to=${day(next)}`);
      expect(res.status).toBe(200);
      const electricity = (res.json.data as Entry[]).filter((e) => e.type === 'electricity');
      expect(electricity.map((e) => [e.from, e.to])).toEqual([[isoSeconds(previous), isoSeconds(month)], [isoSeconds(month), isoSeconds(next)]]);
      expect(electricity[0].emissions.value).toBeCloseTo((halfHoursIn(previous, month) - 1 + 1001) * 0.2, 3);
      expect(electricity[1].emissions.value).toBeCloseTo((halfHoursIn(month, next) - 1 + 2001) * 0.2, 3);
    } finally {
      await readings.put('1022222222222', 'import', constant(new Date(month.getTime() - HALF_HOUR), new Date(month.getTime() + HALF_HOUR), 1));
    }
  });

  it('serves the last 12 complete months by default and only whole months up to the end of last month', async () => {
    const res = await get('KIOSK');
    const data = res.json.data as Entry[];
    expect(data[0].from).toBe(isoSeconds(periodFrom));
    expect(data.at(-1)!.to).toBe(isoSeconds(periodTo));
    const cases: Array<[string, RegExp]> = [
      [`?from=${day(periodFrom)}&to=${day(addMonths(periodTo, 1))}`, /only whole months/],
      [`?from=${day(addMonths(periodFrom, -1))}`, /only whole months/],
      [`?from=${day(new Date(periodFrom.getTime() + 86_400_000))}`, /first day of a month/],
      [`?from=${day(periodTo)}&to=${day(periodTo)}`, /from must be before to/],
    ];
    for (const [query, message] of cases) {
      const refused = await get('KIOSK', query);
      expect(refused.status, query).toBe(400);
      expect(String(refused.json.error_description), query).toMatch(message);
    }
    const one = await get('KIOSK', `?from=${day(addMonths(periodTo, -1))}&to=${day(periodTo)}`);
    expect((one.json.data as Entry[]).map((e) => e.type)).toEqual(['electricity', 'gas']);
  });

  it('answers 202 with Retry-After while a month lacks readings, and serves it once they arrive', async () => {
    const last = addMonths(periodTo, -1);
    let res = await get('LAUNDRY');
    await intensityClient.settled();
    res = await get('LAUNDRY');
    expect(res.status).toBe(202);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(res.json.pendingMonths).toEqual([{ month: isoSeconds(last).slice(0, 7), waitingFor: ['readings'] }]);
    // The months before are complete.
    const earlier = await get('LAUNDRY', `?from=${day(periodFrom)}&to=${day(last)}`);
    expect(earlier.status).toBe(200);
    expect(earlier.json.data).toHaveLength(11);

    await readings.put('1011111111111', 'import', synthesiseReadings({ from: last, months: 1, profile: 'office', seed: 4 }));
    res = await get('LAUNDRY');
    expect(res.status).toBe(200);
    expect(res.json.data).toHaveLength(12);
  });
});
