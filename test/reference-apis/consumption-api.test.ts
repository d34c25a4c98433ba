import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { consumptionApi, consumptionLicenses } from '../../src/reference-apis/consumption-api.ts';
import { addMonths, halfHoursIn, isoSeconds, startOfMonth } from '../../src/reference-apis/months.ts';
import { SqliteReadingStore } from '../../src/reference-apis/readings-store.ts';
import { synthesiseReadings } from '../../src/reference-apis/synthetic-readings.ts';
import { permissionGuard, type PermissionGuard } from '../../src/resource-server/guard.ts';
import { listenResourceServer, type RunningResourceServer } from '../../src/resource-server/listener.ts';
import { oauthClient, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';
import { call, grant, guardOptions, LICENSE_CONSUMPTION } from '../resource-server/support.ts';

const SME = { email: 'ops@bakery.example', password: 'sourdough since dawn', organisation: 'Riverside Bakery Ltd' };
const ELECTRICITY = '1012345678901';
const SECOND_ELECTRICITY = '1098765432109';
const GAS = '1234567';

describe('the reference consumption API behind the permission guard', () => {
  let tf: TestTrustFramework;
  let server: TestServer;
  let capCredentials: ClientCredentials;
  let cap: OAuthClient;
  let store: SqliteReadingStore;
  let guard: PermissionGuard;
  let api: RunningResourceServer;
  let signedApi: RunningResourceServer;
  let token: string;
  // The data period the authorization server gives: the 12 whole months before this one.
  const periodTo = startOfMonth(new Date());
  const periodFrom = addMonths(periodTo, -12);
  const day = (d: Date) => isoSeconds(d).slice(0, 10);

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    capCredentials = await tf.member('https://directory.example/a/carbon-calc', ['carbon-accounting-provider'], 'Carbon Calc Ltd');
    const apiCredentials = await tf.member('https://directory.example/a/meter-data-api', ['energy-data-provider'], 'Demo Energy Ltd');
    server = await startTestServer(tf, { OPERATOR_ROLE: 'energy-data-provider', OPERATOR_NAME: 'Demo Energy Ltd', RESOURCE_SERVERS: apiCredentials.applicationUrl });
    const { meters } = await server.smeAccounts.addSme({ ...SME, meters: [`${ELECTRICITY}:SW1A`, `${SECOND_ELECTRICITY}:M1`, `gas:${GAS}:SW1A`] });
    cap = await oauthClient(server.issuer, capCredentials, tf.serverCa);
    // The SME lets the CAP see the first electricity meter and the gas meter, not the second electricity meter.
    const chosen = meters.filter((m) => m.identifier !== SECOND_ELECTRICITY).map((m) => m.id);
    token = (await grant(server, tf, cap, SME, LICENSE_CONSUMPTION, chosen)).access_token;

    store = new SqliteReadingStore(openSqliteDatabase(':memory:'));
    await store.put(ELECTRICITY, 'import', synthesiseReadings({ from: periodFrom, months: 12, profile: 'bakery', seed: 7 }));
    await store.put(SECOND_ELECTRICITY, 'import', synthesiseReadings({ from: periodFrom, months: 12, profile: 'office', seed: 8 }));
    // Gas: the last month is not loaded yet.
    await store.put(GAS, 'import', synthesiseReadings({ from: periodFrom, months: 11, profile: 'bakery', fuel: 'gas', seed: 9 }));

    expect(consumptionLicenses()).toContain(LICENSE_CONSUMPTION);
    guard = permissionGuard(guardOptions(tf, server, apiCredentials, consumptionLicenses(), { cacheSeconds: 30 }));
    api = await listenResourceServer(consumptionApi({ guard, readings: store, origin: apiCredentials.applicationUrl, retryAfterSeconds: 120 }), { ...tf.serverTls, clientCa: tf.clientCa });
    signedApi = await listenResourceServer(consumptionApi({
      guard, readings: store,
      provenance: async (ctx, payload) => ({ record: 'signed elsewhere', path: ctx.path, api: payload.api, rows: (payload.body.data as unknown[]).length, license: payload.permission.license }),
    }), { ...tf.serverTls, clientCa: tf.clientCa });
  });
  afterAll(async () => {
    await api?.close();
    await signedApi?.close();
    guard?.close();
    await server?.close();
  });

  const get = (path: string, base = api.url) => call(`${base}${path}`, { credentials: capCredentials, serverCa: tf.serverCa, token });

  it('lists only the meters of the permission', async () => {
    const res = await get('/datasources');
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.json.data).toEqual([
      { id: ELECTRICITY, type: 'electricity', location: { ukPostcodeOutcode: 'SW1A' }, availableMeasures: ['import', 'export'] },
      { id: GAS, type: 'gas', location: { ukPostcodeOutcode: 'SW1A' }, availableMeasures: ['import'] },
    ]);
  });

  it('answers 404 for a meter outside the permission, and for a measure the meter does not have', async () => {
    const other = await get(`/datasources/${SECOND_ELECTRICITY}/import`);
    expect(other.status).toBe(404);
    expect(other.json.error).toBe('not_found');
    expect((await get(`/datasources/${GAS}/export`)).status).toBe(404);
    expect((await get(`/datasources/${ELECTRICITY}/generation`)).status).toBe(404);
  });

  it('serves the half-hourly readings of one whole month', async () => {
    const from = addMonths(periodFrom, 2);
    const to = addMonths(from, 1);
    const res = await get(`/datasources/${ELECTRICITY}/import?from=${day(from)}&to=${day(to)}`);
    expect(res.status).toBe(200);
    const data = res.json.data as Array<{ type: string; from: string; to: string; takenAt: string; energy: { value: number; unitCode: string }; cumulative: { value: number; unitCode: string } }>;
    expect(data).toHaveLength(halfHoursIn(from, to));
    expect(data[0].from).toBe(isoSeconds(from));
    expect(data[0].to).toBe(isoSeconds(new Date(from.getTime() + 30 * 60_000)));
    expect(data.at(-1)!.to).toBe(isoSeconds(to));
    expect(data[0]).toMatchObject({ type: 'electricity', energy: { unitCode: 'KWH' }, cumulative: { unitCode: 'KWH' } });
    expect(new Date(data[0].takenAt).getTime()).toBeGreaterThan(new Date(data[0].to).getTime());
    const expected = (await store.range(ELECTRICITY, 'import', from, to)).map((r) => r.kWh);
    expect(data.map((r) => r.energy.value)).toEqual(expected);
    expect(data.at(-1)!.cumulative.value).toBeCloseTo(expected.reduce((a, b) => a + b, 0), 2);
    expect(res.json.location).toEqual({ ukPostcodeOutcode: 'SW1A' });
    expect(res.json.provenance).toMatchObject({ signed: false, to: capCredentials.applicationUrl, license: LICENSE_CONSUMPTION });
    expect(String((res.json.provenance as { notice: string }).notice)).toMatch(/not an IB1 provenance record/);
  });

  it('serves the whole data period when from and to are left out, and accepts full timestamps', async () => {
    const res = await get(`/datasources/${ELECTRICITY}/import`);
    expect(res.status).toBe(200);
    expect(res.json.data).toHaveLength(halfHoursIn(periodFrom, periodTo));
    const last = addMonths(periodTo, -1);
    const one = await get(`/datasources/${ELECTRICITY}/import?from=${encodeURIComponent(isoSeconds(last))}&to=${encodeURIComponent(isoSeconds(periodTo))}`);
    expect(one.status).toBe(200);
    expect(one.json.data).toHaveLength(halfHoursIn(last, periodTo));
  });

  it('refuses anything but whole months inside the data period, saying why', async () => {
    const cases: Array<[string, RegExp]> = [
      [`from=${day(new Date(periodFrom.getTime() + 86_400_000))}&to=${day(periodTo)}`, /first day of a month/],
      [`from=${day(periodFrom)}&to=${encodeURIComponent(isoSeconds(new Date(addMonths(periodTo, -1).getTime() + 30 * 60_000)))}`, /first day of a month at 00:00 UTC/],
      [`from=${day(addMonths(periodFrom, -1))}&to=${day(periodTo)}`, /only whole months from .* may be served/],
      [`from=${day(periodFrom)}&to=${day(addMonths(periodTo, 1))}`, /only whole months from .* may be served/],
      [`from=${day(addMonths(periodFrom, 3))}&to=${day(addMonths(periodFrom, 3))}`, /from must be before to/],
      [`from=yesterday&to=${day(periodTo)}`, /first day of a month/],
      [`from=${day(periodFrom)}&from=${day(periodFrom)}`, /more than once/],
    ];
    for (const [query, message] of cases) {
      const res = await get(`/datasources/${ELECTRICITY}/import?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.json.error).toBe('invalid_request');
      expect(String(res.json.error_description), query).toMatch(message);
    }
  });

  it('answers 202 with Retry-After while the readings of an asked month are not loaded', async () => {
    const res = await get(`/datasources/${GAS}/import`);
    expect(res.status).toBe(202);
    expect(res.headers.get('retry-after')).toBe('120');
    expect(res.json.pendingMonths).toEqual([isoSeconds(addMonths(periodTo, -1)).slice(0, 7)]);
    // The months that are loaded are served.
    const early = await get(`/datasources/${GAS}/import?from=${day(periodFrom)}&to=${day(addMonths(periodTo, -1))}`);
    expect(early.status).toBe(200);
    expect((early.json.data as Array<{ type: string }>)[0].type).toBe('gas');
    // Export readings were never loaded for this meter.
    expect((await get(`/datasources/${ELECTRICITY}/export`)).status).toBe(202);
  });

  it('puts what the provenance hook returns in the response', async () => {
    const res = await get(`/datasources/${ELECTRICITY}/import?from=${day(periodFrom)}&to=${day(addMonths(periodFrom, 1))}`, signedApi.url);
    expect(res.status).toBe(200);
    expect(res.json.provenance).toEqual({
      record: 'signed elsewhere', path: `/datasources/${ELECTRICITY}/import`, api: 'consumption',
      rows: halfHoursIn(periodFrom, addMonths(periodFrom, 1)), license: LICENSE_CONSUMPTION,
    });
  });

  it('needs the guard: no token, no data', async () => {
    const res = await call(`${api.url}/datasources`, { credentials: capCredentials, serverCa: tf.serverCa });
    expect(res.status).toBe(401);
    const unknown = await call(`${api.url}/nothing-here`, { credentials: capCredentials, serverCa: tf.serverCa });
    expect(unknown.status).toBe(401);
  });
});
