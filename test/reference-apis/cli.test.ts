import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { SqliteIntensityStore } from '../../src/reference-apis/carbon-intensity.ts';
import { syntheticIntensity } from '../../src/reference-apis/intensity-sample.ts';
import { SqliteReadingStore } from '../../src/reference-apis/readings-store.ts';
import { assertNode24, lines, runScript, spawnScript } from '../cli/run-node.ts';
import { oauthClient } from '../support/oauth-client.ts';
import { freePort, startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework } from '../support/trust-framework.ts';
import { call, grant, LICENSE_CONSUMPTION, waitFor } from '../resource-server/support.ts';
import { startFakeCarbonIntensityApi, type FakeCarbonIntensityApi } from './fake-carbon-intensity.ts';

const CLI = 'src/reference-apis/cli.ts';
const directories: string[] = [];
function temporaryDirectory(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'perseus-reference-'));
  directories.push(dir);
  return dir;
}

describe('node src/reference-apis/cli.ts', () => {
  let tf: TestTrustFramework;
  let fake: FakeCarbonIntensityApi;

  beforeAll(async () => {
    assertNode24();
    tf = await TestTrustFramework.create();
    fake = await startFakeCarbonIntensityApi(tf.serverTls);
  });
  afterAll(async () => {
    await fake?.close();
    for (const dir of directories) rmSync(dir, { recursive: true, force: true });
  });

  it('synthesises the same readings for the same meter every time', async () => {
    const dbs = [path.join(temporaryDirectory(), 'a.sqlite'), path.join(temporaryDirectory(), 'b.sqlite')];
    for (const db of dbs) {
      const out = await runScript(CLI, ['readings', 'synth', '--meter', '1012345678901', '--from', '2025-01', '--months', '2', '--profile', 'shop'], { REFERENCE_DB: db });
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toMatch(/synthesised 2832 half-hourly readings \(shop, electricity, seed \d+\)/);
    }
    const [a, b] = await Promise.all(dbs.map((db) => new SqliteReadingStore(openSqliteDatabase(db)).range('1012345678901', 'import', new Date('2025-01-01T00:00:00Z'), new Date('2025-03-01T00:00:00Z'))));
    expect(a).toHaveLength(2832);
    expect(a).toEqual(b);
    const bad = await runScript(CLI, ['readings', 'synth', '--meter', 'x', '--from', '2025-13', '--months', '2'], { REFERENCE_DB: dbs[0] });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--from must be a month');
  });

  it('loads readings from CSV and names the line of a bad one', async () => {
    const dir = temporaryDirectory();
    const db = path.join(dir, 'r.sqlite');
    const csv = path.join(dir, 'readings.csv');
    // Clocks go forward at 01:00 UTC that day: 02:00 BST is 01:00 UTC.
    writeFileSync(csv, 'timestamp,kWh\n2025-03-30T00:00:00Z,1.5\n2025-03-30T00:30:00Z,0.25\n2025-03-30T02:00:00+01:00,2\n');
    const out = await runScript(CLI, ['readings', 'load', '--meter', '1098765432109', '--csv', csv], { REFERENCE_DB: db });
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain('loaded 3 half-hourly import readings');
    const stored = await new SqliteReadingStore(openSqliteDatabase(db)).range('1098765432109', 'import', new Date('2025-03-29T00:00:00Z'), new Date('2025-04-01T00:00:00Z'));
    expect(stored.map((r) => [r.start.toISOString(), r.kWh])).toEqual([['2025-03-30T00:00:00.000Z', 1.5], ['2025-03-30T00:30:00.000Z', 0.25], ['2025-03-30T01:00:00.000Z', 2]]);
    expect(stored[0].takenAt.toISOString()).toBe('2025-03-30T01:00:00.000Z');

    for (const [text, message] of [
      ['timestamp,kWh\n2025-03-30T00:00:00Z,1.5\n2025-03-30T00:10:00Z,1\n', 'line 3: 2025-03-30T00:10:00Z is not the start of a half-hour'],
      ['2025-03-30T00:00:00Z,1.5\n2025-03-30T01:00:00+01:00,1\n', 'line 2: 2025-03-30T01:00:00+01:00 appears twice'],
      ['2025-03-30T00:00:00,1.5\n', 'must be ISO 8601 with Z or an offset'],
      ['2025-03-30T00:00:00Z,-1\n', 'must be a number, 0 or more'],
    ]) {
      writeFileSync(csv, text);
      const bad = await runScript(CLI, ['readings', 'load', '--meter', '1098765432109', '--csv', csv], { REFERENCE_DB: db });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain(message);
    }
  });

  it('loads the bundled sample and fetches intensity from the API (here a local one)', async () => {
    const db = path.join(temporaryDirectory(), 'i.sqlite');
    const sample = await runScript(CLI, ['intensity', 'load-sample'], { REFERENCE_DB: db });
    expect(sample.code, sample.stderr).toBe(0);
    expect(sample.stdout).toContain('SYNTHETIC');
    fake.calls.length = 0;
    const fetched = await runScript(CLI, ['intensity', 'fetch', '--outcode', 'm1', '--from', '2026-04', '--months', '1'], {
      REFERENCE_DB: db, CARBON_INTENSITY_URL: fake.url, NODE_EXTRA_CA_CERTS: path.join(tf.pkiDir, 'server-ca.pem'),
    });
    expect(fetched.code, fetched.stderr).toBe(0);
    expect(fake.calls.length).toBe(3);
    const store = new SqliteIntensityStore(openSqliteDatabase(db));
    const april = await store.range('M1', new Date('2026-04-01T00:00:00Z'), new Date('2026-05-01T00:00:00Z'));
    expect(april.size).toBe(30 * 48);
    expect(april.get(Date.UTC(2026, 3, 10, 12))).toEqual({ forecast: syntheticIntensity('M1', new Date(Date.UTC(2026, 3, 10, 12))), source: 'api' });
    expect((await store.range('M1', new Date('2025-01-01T00:00:00Z'), new Date('2025-01-02T00:00:00Z'))).size).toBe(48);
  });

  it('serves the consumption API behind the guard', async () => {
    const api = await tf.member('https://directory.example/a/meter-data-api', ['energy-data-provider'], 'Demo Energy Ltd');
    const cap = await tf.member('https://directory.example/a/carbon-calc', ['carbon-accounting-provider'], 'Carbon Calc Ltd');
    let server: TestServer | undefined;
    const port = await freePort();
    const db = path.join(temporaryDirectory(), 'serve.sqlite');
    try {
      server = await startTestServer(tf, { OPERATOR_ROLE: 'energy-data-provider', RESOURCE_SERVERS: api.applicationUrl });
      writeFileSync(path.join(tf.dataDir, 'api.pem'), api.cert);
      writeFileSync(path.join(tf.dataDir, 'api.key.pem'), api.key);
      await server.smeAccounts.addSme({ email: 'a@shop.example', password: 'a long enough password', organisation: 'Shop Ltd', meters: ['1012345678901:SW1A'] });
      const token = (await grant(server, tf, await oauthClient(server.issuer, cap, tf.serverCa), { email: 'a@shop.example', password: 'a long enough password' }, LICENSE_CONSUMPTION)).access_token;
      const serving = spawnScript(CLI, ['serve', 'consumption'], {
        DATA_DIR: tf.dataDir, REFERENCE_DB: db, REFERENCE_PORT: String(port),
        REFERENCE_CERT_FILE: path.join(tf.dataDir, 'api.pem'), REFERENCE_KEY_FILE: path.join(tf.dataDir, 'api.key.pem'),
        REFERENCE_INTROSPECTION_URL: `${server.mtlsOrigin}/introspect`,
      });
      let output = '';
      serving.stdout!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
      serving.stderr!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
      try {
        await waitFor('the API to listen', async () => (output.includes('listening') ? true : undefined), 15_000);
        expect(lines(output).map((line) => JSON.parse(line).msg)).toContain('reference consumption API listening');
        const res = await call(`https://localhost:${port}/datasources`, { credentials: cap, serverCa: tf.serverCa, token });
        expect(res.status).toBe(200);
        expect(res.json.data).toEqual([{ id: '1012345678901', type: 'electricity', location: { ukPostcodeOutcode: 'SW1A' }, availableMeasures: ['import', 'export'] }]);
      } finally {
        serving.kill('SIGTERM');
        await new Promise((resolve) => serving.once('close', resolve));
      }
    } finally {
      await server?.close();
    }
  });
});
