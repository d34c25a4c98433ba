import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pushAuthorization, smeDecides } from '../support/flows.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { oauthClient, postForm, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServerOn, storageUnderTest, type StorageUnderTest, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const SME = { email: 'load@bakehouse.example', password: 'bread under pressure', organisation: 'Bakehouse Ltd' };

describe('Redis and MongoDB killed and restarted under load', () => {
  let storage: StorageUnderTest;
  let tf: TestTrustFramework;
  let server: TestServer;
  let bank: OAuthClient;
  let bankCredentials: ClientCredentials;
  let api: ClientCredentials;
  let tokens: oauth.TokenEndpointResponse;

  beforeAll(async () => {
    storage = await storageUnderTest('mongo');
    tf = await TestTrustFramework.create();
    bankCredentials = await tf.member('https://directory.example/a/load-bank', ['financial-service-provider'], 'Load Bank plc');
    api = await tf.member('https://directory.example/a/load-api', ['carbon-accounting-provider'], 'Load CAP Ltd');
    server = await startTestServerOn(storage, tf, { RESOURCE_SERVERS: api.applicationUrl, RATE_LIMIT_CLIENT: 'off', STORE_TIMEOUT_MS: '1000' });
    await server.smeAccounts.addSme({ ...SME, meters: ['1800000000001:L1'] });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
  });
  afterAll(async () => {
    await server?.close();
    await storage?.stop();
  });

  /** Introspections and refreshes in a loop for `ms`, counting answers by status (bounded, 127.0.0.1 only). */
  async function load(ms: number, during: () => Promise<void>) {
    const statuses = new Map<number, number>();
    const until = Date.now() + ms;
    const worker = async () => {
      while (Date.now() < until) {
        const res = Math.random() < 0.5
          ? await postForm(`${server.mtlsOrigin}/introspect`, { client_id: api.applicationUrl, token: tokens.access_token }, api, tf.serverCa)
          : await postForm(`${server.mtlsOrigin}/token`, { client_id: bankCredentials.applicationUrl, grant_type: 'refresh_token', refresh_token: tokens.refresh_token! }, bankCredentials, tf.serverCa);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status !== 200 && res.status !== 503) throw new Error(`unexpected ${res.status} ${JSON.stringify(res.json)}`);
      }
    };
    await Promise.all([...Array.from({ length: 4 }, worker), during()]);
    return statuses;
  }

  async function recovered() {
    const until = Date.now() + 15_000;
    for (;;) {
      const res = await postForm(`${server.mtlsOrigin}/token`, { client_id: bankCredentials.applicationUrl, grant_type: 'refresh_token', refresh_token: tokens.refresh_token! }, bankCredentials, tf.serverCa);
      if (res.status === 200) return;
      if (Date.now() > until) throw new Error('no recovery within 15 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  for (const which of ['redis', 'mongo'] as const) {
    it(`answers only 200 or 503 while ${which} is killed and restarted, then recovers without a restart`, async () => {
      const organisation = (await server.smeAccounts.findOrganisation(SME.organisation))!;
      const before = await server.permissions.store.byOrganisation(organisation.id);
      const statuses = await load(6_000, async () => {
        await new Promise((r) => setTimeout(r, 1_500));
        await storage[which]!.kill();
        await new Promise((r) => setTimeout(r, 3_000));
        await storage[which]!.restart();
      });
      expect(statuses.get(503) ?? 0).toBeGreaterThan(0);
      expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
      await recovered();
      const after = await server.permissions.store.byOrganisation(organisation.id);
      expect(after.map((p) => [p.id, p.revoked?.getTime(), p.expires.getTime()])).toEqual(before.map((p) => [p.id, p.revoked?.getTime(), p.expires.getTime()]));
      expect(await server.audit.verify()).toMatchObject({ ok: true });
    }, 60_000);
  }
});
