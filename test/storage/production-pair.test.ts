import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { BANK_REDIRECT, pushAuthorization, smeDecides } from '../support/flows.ts';
import { formAction, hiddenField, HttpBrowser, meterChoices } from '../support/http-browser.ts';
import { oauthClient, postForm, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServerOn, storageUnderTest, type StorageUnderTest, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';

const SME = { email: 'twin@workshop.example', password: 'two servers one store', organisation: 'Twin Workshop Ltd' };

describe('the production pair (MongoDB + Redis) shared by two servers, and losing a store mid-flow', () => {
  let storage: StorageUnderTest;
  let tf: TestTrustFramework;
  let a: TestServer;
  let b: ServerProcess;
  let bankCredentials: ClientCredentials;
  let apiCredentials: ClientCredentials;
  let bank: OAuthClient;
  let env: Record<string, string>;

  beforeAll(async () => {
    storage = await storageUnderTest('mongo');
    tf = await TestTrustFramework.create();
    bankCredentials = await tf.member('https://directory.example/a/pair-bank', ['financial-service-provider'], 'Pair Bank plc');
    apiCredentials = await tf.member('https://directory.example/a/pair-api', ['carbon-accounting-provider'], 'Pair CAP Ltd');
    env = { RESOURCE_SERVERS: apiCredentials.applicationUrl };
    a = await startTestServerOn(storage, tf, env);
    // Server B is another OS process of the same deployment (same issuer and origins, its own
    // ports), as behind a load balancer.
    b = await serverProcess({ ...storage.env, ...env, DATA_DIR: tf.dataDir, ISSUER: a.issuer, MTLS_ORIGIN: a.mtlsOrigin, LOG_LEVEL: 'warn' });
    await b.start();
    await a.smeAccounts.addSme({ ...SME, meters: ['1400000000001:CF10'] });
    bank = await oauthClient(a.issuer, bankCredentials, tf.serverCa);
  });
  afterAll(async () => {
    await a?.close();
    await b?.stop();
    await storage?.stop();
  });

  /** The stores reconnect by themselves: wait (bounded) until the server says it is ready. */
  async function readyAgain(server: { publicPort: number; issuer: string }) {
    const until = Date.now() + 15_000;
    for (;;) {
      const res = await new HttpBrowser(server.issuer, tf.serverCa).request(`https://localhost:${server.publicPort}/health/ready`);
      if (res.status === 200) return;
      if (Date.now() > until) throw new Error('the server did not become ready again within 15 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const at = (server: { mtlsPort: number }, path: string) => `https://localhost:${server.mtlsPort}${path}`;
  const introspectAt = async (server: { mtlsPort: number }, token: string) =>
    (await postForm(at(server, '/introspect'), { client_id: apiCredentials.applicationUrl, token }, apiCredentials, tf.serverCa)).json.active;

  it('lets the SME consent through one server and the bank exchange the code at the other; a withdrawal at one is seen at the other at once', async () => {
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(a.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    const tokens = await postForm(at(b, '/token'), {
      client_id: bankCredentials.applicationUrl, grant_type: 'authorization_code', code: callback.searchParams.get('code')!,
      redirect_uri: BANK_REDIRECT, code_verifier: pushed.codeVerifier,
    }, bankCredentials, tf.serverCa);
    expect(tokens.status).toBe(200);
    const accessToken = String(tokens.json.access_token);
    expect(await introspectAt(a, accessToken)).toBe(true);
    expect(await introspectAt(b, accessToken)).toBe(true);
    const permission = (await postForm(at(b, '/permission'), { token: String(tokens.json.refresh_token) }, bankCredentials, tf.serverCa)).json.permission as Record<string, string>;
    const organisation = (await a.smeAccounts.findOrganisation(SME.organisation))!;
    const [record] = (await a.permissions.store.byOrganisation(organisation.id)).filter((p) => !p.revoked);
    expect(record.account).toBe(permission.account);
    await a.permissions.withdraw(record.id, 'sme', 'usr_test', 'seen across servers');
    expect(await introspectAt(b, accessToken)).toBe(false);
    const refreshed = await postForm(at(b, '/token'), { client_id: bankCredentials.applicationUrl, grant_type: 'refresh_token', refresh_token: String(tokens.json.refresh_token) }, bankCredentials, tf.serverCa);
    expect(refreshed.json.error).toBe('invalid_grant');
  });

  it('fails cleanly while Redis is down, writes no half permission, and recovers by itself', async () => {
    const organisation = (await a.smeAccounts.findOrganisation(SME.organisation))!;
    const before = (await a.permissions.store.byOrganisation(organisation.id)).length;
    const pushed = await pushAuthorization(bank);
    const browser = new HttpBrowser(a.issuer, tf.serverCa);
    const signIn = await browser.navigate(pushed.authorizationUrl.href);
    expect(signIn.status).toBe(200);
    await storage.redis!.kill();
    const page = await browser.navigate(formAction(signIn.html, '/sign-in'), { form: { csrf: hiddenField(signIn.html, 'csrf'), email: SME.email, password: SME.password } });
    expect(page.status).toBe(503);
    expect(page.html).toContain('briefly unavailable');
    const par = await postForm(at(a, '/par'), { client_id: bankCredentials.applicationUrl, response_type: 'code', redirect_uri: BANK_REDIRECT, scope: 'https://registry.core.trust.ib1.org/scheme/perseus/license/emissions-cap-fsp/2026-03-12', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }, bankCredentials, tf.serverCa);
    expect(par.status).toBe(503);
    expect(par.json.error).toBe('temporarily_unavailable');
    expect(par.headers.get('retry-after')).toBeTruthy();
    const ready = await new HttpBrowser(a.issuer, tf.serverCa).request('/health/ready');
    expect(ready.status).toBe(503);
    await storage.redis!.restart();
    await readyAgain(a);
    expect((await a.permissions.store.byOrganisation(organisation.id)).length).toBe(before);
    const again = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(a.issuer, tf.serverCa), again.authorizationUrl, SME);
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: again.codeVerifier, expectedState: again.state });
    expect(await introspectAt(a, tokens.access_token)).toBe(true);
  });

  it('fails the decision cleanly while MongoDB is down, writes no permission, and the next flow succeeds', async () => {
    const organisation = (await a.smeAccounts.findOrganisation(SME.organisation))!;
    const before = await a.permissions.store.byOrganisation(organisation.id);
    const pushed = await pushAuthorization(bank);
    const browser = new HttpBrowser(a.issuer, tf.serverCa);
    const signIn = await browser.navigate(pushed.authorizationUrl.href);
    const consent = await browser.navigate(formAction(signIn.html, '/sign-in'), { form: { csrf: hiddenField(signIn.html, 'csrf'), email: SME.email, password: SME.password } });
    expect(consent.status).toBe(200);
    await storage.mongo!.kill();
    const decided = await browser.navigate(formAction(consent.html, '/decision'), { form: { csrf: hiddenField(consent.html, 'csrf'), decision: 'allow', meter: meterChoices(consent.html) } });
    expect(decided.leftTo).toBeUndefined();
    expect(decided.status).toBe(503);
    await storage.mongo!.restart();
    await readyAgain(a);
    await readyAgain(b);
    const after = await a.permissions.store.byOrganisation(organisation.id);
    expect(after.map((p) => [p.id, p.lastGranted.getTime(), p.grantId])).toEqual(before.map((p) => [p.id, p.lastGranted.getTime(), p.grantId]));
    const again = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(a.issuer, tf.serverCa), again.authorizationUrl, SME);
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: again.codeVerifier, expectedState: again.state });
    expect(await introspectAt(b, tokens.access_token)).toBe(true);
  });
});
