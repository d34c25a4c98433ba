import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { BANK_REDIRECT, pushAuthorization, smeDecides } from '../support/flows.ts';
import { formAction, hiddenField, HttpBrowser, meterChoices } from '../support/http-browser.ts';
import { oauthClient, postForm, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServerOn, storageUnderTest, type StorageUnderTest, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const ALICE = { email: 'alice@mill.example', password: 'first of two owners', organisation: 'Old Mill Ltd' };
const BOB = { email: 'bob@mill.example', password: 'second of two owners', organisation: 'Old Mill Ltd' };

describe.each(['sqlite', 'mongo'] as const)('races on one permission (STORAGE=%s)', (kind) => {
  let storage: StorageUnderTest;
  let tf: TestTrustFramework;
  let server: TestServer;
  let bankCredentials: ClientCredentials;
  let apiCredentials: ClientCredentials;
  let bank: OAuthClient;

  beforeAll(async () => {
    storage = await storageUnderTest(kind);
    tf = await TestTrustFramework.create();
    bankCredentials = await tf.member('https://directory.example/a/race-bank', ['financial-service-provider'], 'Race Bank plc');
    apiCredentials = await tf.member('https://directory.example/a/race-api', ['carbon-accounting-provider'], 'Race CAP Ltd');
    server = await startTestServerOn(storage, tf, { RESOURCE_SERVERS: apiCredentials.applicationUrl });
    await server.smeAccounts.addSme({ ...ALICE, meters: ['1500000000001:YO1'] });
    await server.smeAccounts.addSme(BOB);
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
  });
  afterAll(async () => {
    await server?.close();
    await storage?.stop();
  });

  const token = (form: Record<string, string>) => postForm(`${server.mtlsOrigin}/token`, { client_id: bankCredentials.applicationUrl, ...form }, bankCredentials, tf.serverCa);
  const active = async (t: string) => (await postForm(`${server.mtlsOrigin}/introspect`, { client_id: apiCredentials.applicationUrl, token: t }, apiCredentials, tf.serverCa)).json.active;
  async function code() {
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, ALICE);
    return { pushed, code: callback.searchParams.get('code')!, callback };
  }

  it('gives exactly one token for 100 parallel redemptions of one code, and the loser sees invalid_grant', async () => {
    const { pushed, code: value } = await code();
    const answers = await Promise.all(Array.from({ length: 100 }, () =>
      token({ grant_type: 'authorization_code', code: value, redirect_uri: BANK_REDIRECT, code_verifier: pushed.codeVerifier })));
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s >= 500)).toHaveLength(0);
    for (const a of answers.filter((x) => x.status !== 200)) expect(a.json.error).toBe('invalid_grant');
  });

  it('answers parallel refreshes of one refresh token consistently and keeps the grant', async () => {
    const { pushed, callback } = await code();
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    const answers = await Promise.all(Array.from({ length: 20 }, () => token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token! })));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    for (const a of answers) expect(a.json.refresh_token ?? tokens.refresh_token).toBe(tokens.refresh_token);
    for (const a of answers) expect(await active(String(a.json.access_token))).toBe(true);
    expect((await token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token! })).status).toBe(200);
  });

  it('lets no token outlive a withdrawal that races refreshes', async () => {
    const { pushed, callback } = await code();
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    const link = await server.permissions.store.refreshTokenLink(hashIdentifier(tokens.refresh_token!));
    const permission = (await server.permissions.store.byGrantId(link!.grantId))!;
    const refreshes = Array.from({ length: 20 }, (_, i) => new Promise((r) => setTimeout(r, i * 3)).then(() => token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token! })));
    const withdrawal = new Promise((r) => setTimeout(r, 20)).then(() => server.permissions.withdraw(permission.id, 'sme', 'usr_race', 'race'));
    const [answers] = await Promise.all([Promise.all(refreshes), withdrawal]);
    expect(answers.every((a) => a.status === 200 || a.json.error === 'invalid_grant')).toBe(true);
    for (const a of answers.filter((x) => x.status === 200)) expect(await active(String(a.json.access_token))).toBe(false);
    expect(await active(tokens.access_token)).toBe(false);
    expect((await token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token! })).json.error).toBe('invalid_grant');
  });

  it('keeps one record with full history when two people of one organisation decide at once', async () => {
    const other = await tf.member(`https://directory.example/a/race-other-${kind}`, ['financial-service-provider'], 'Race Other plc');
    const otherBank = await oauthClient(server.issuer, other, tf.serverCa);
    const consentFor = async (who: typeof ALICE) => {
      const pushed = await pushAuthorization(otherBank);
      const browser = new HttpBrowser(server.issuer, tf.serverCa);
      const signIn = await browser.navigate(pushed.authorizationUrl.href);
      const consent = await browser.navigate(formAction(signIn.html, '/sign-in'), { form: { csrf: hiddenField(signIn.html, 'csrf'), email: who.email, password: who.password } });
      return { browser, consent };
    };
    const [a, b] = await Promise.all([consentFor(ALICE), consentFor(BOB)]);
    const decide = (x: typeof a) => x.browser.navigate(formAction(x.consent.html, '/decision'), { form: { csrf: hiddenField(x.consent.html, 'csrf'), decision: 'allow', meter: meterChoices(x.consent.html) } });
    const [da, db] = await Promise.all([decide(a), decide(b)]);
    expect(da.leftTo?.searchParams.get('code')).toBeTruthy();
    expect(db.leftTo?.searchParams.get('code')).toBeTruthy();
    const organisation = (await server.smeAccounts.findOrganisation(ALICE.organisation))!;
    const records = (await server.permissions.store.byOrganisation(organisation.id)).filter((p) => p.clientId === other.applicationUrl);
    expect(records).toHaveLength(1);
    const kinds = (await server.permissions.store.history(records[0].id)).map((e) => e.kind).filter((k) => k === 'granted' || k === 'renewed');
    expect(kinds.sort()).toEqual(['granted', 'renewed']);
  });
});
