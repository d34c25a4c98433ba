import * as oauth from 'openid-client';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { BANK_REDIRECT, LICENSE_EMISSIONS, pushAuthorization, smeDecides } from '../support/flows.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { oauthClient, postForm, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const SME = { email: 'finance@joinery.example', password: 'a long enough password', organisation: 'Hilltop Joinery Ltd' };

describe('the server refuses what the IB1 profile forbids, with the right OAuth error', () => {
  let tf: TestTrustFramework;
  let server: TestServer;
  let bankCredentials: ClientCredentials;
  let bank: OAuthClient;
  let otherBank: OAuthClient;
  let dataProvider: OAuthClient;

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    bankCredentials = await tf.member('https://directory.example/a/bank-one', ['financial-service-provider'], 'Bank One plc');
    const otherCredentials = await tf.member('https://directory.example/a/bank-two', ['financial-service-provider'], 'Bank Two plc');
    const apiCredentials = await tf.member('https://directory.example/a/emissions-api', ['carbon-accounting-provider'], 'Demo CAP Ltd');
    server = await startTestServer(tf, { RESOURCE_SERVERS: apiCredentials.applicationUrl });
    await server.smeAccounts.addSme({ ...SME, meters: ['2000000000001:LS1'] });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    otherBank = await oauthClient(server.issuer, otherCredentials, tf.serverCa);
    dataProvider = await oauthClient(server.issuer, apiCredentials, tf.serverCa);
  });
  afterAll(async () => {
    await server?.close();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const par = (form: Record<string, string>, credentials: ClientCredentials | undefined = bankCredentials) =>
    postForm(`${server.mtlsOrigin}/par`, {
      client_id: credentials?.applicationUrl ?? bankCredentials.applicationUrl,
      response_type: 'code',
      redirect_uri: BANK_REDIRECT,
      scope: LICENSE_EMISSIONS,
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
      state: 'xyz',
      ...form,
    }, credentials, tf.serverCa);

  async function codeFor(client: OAuthClient) {
    const pushed = await pushAuthorization(client);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    return { pushed, callback, code: callback.searchParams.get('code')! };
  }

  const tokenRequest = (form: Record<string, string>, credentials: ClientCredentials | undefined = bankCredentials) =>
    postForm(`${server.mtlsOrigin}/token`, { client_id: credentials?.applicationUrl ?? bankCredentials.applicationUrl, ...form }, credentials, tf.serverCa);

  it('accepts a well-formed PAR (the baseline the other cases change one thing of)', async () => {
    const res = await par({});
    expect(res.status).toBe(201);
    expect(res.json.request_uri).toMatch(/^urn:ietf:params:oauth:request_uri:/);
    expect(res.json.expires_in).toBeLessThanOrEqual(60);
  });

  it('refuses an authorization request that did not come through PAR', async () => {
    const browser = new HttpBrowser(server.issuer, tf.serverCa);
    const url = new URL(`${server.issuer}/authorize`);
    for (const [k, v] of Object.entries({ client_id: bankCredentials.applicationUrl, response_type: 'code', redirect_uri: BANK_REDIRECT, scope: LICENSE_EMISSIONS, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' })) url.searchParams.set(k, v);
    const res = await browser.navigate(url.href);
    expect(res.leftTo).toBeUndefined();
    expect(res.status).toBe(400);
    expect(res.html).toContain('invalid_request');
    expect(res.html).toMatch(/[Pp]ushed [Aa]uthorization [Rr]equest/);
  });

  it('refuses plain PKCE and a missing code_challenge', async () => {
    const plain = await par({ code_challenge_method: 'plain', code_challenge: 'x'.repeat(43) });
    expect(plain.status).toBe(400);
    expect(plain.json.error).toBe('invalid_request');
    const missing = await par({ code_challenge: '' });
    expect(missing.status).toBe(400);
    expect(missing.json.error).toBe('invalid_request');
  });

  it('refuses response types other than code and response modes other than query', async () => {
    expect((await par({ response_type: 'code id_token' })).json.error).toMatch(/unsupported_response_type|invalid_request/);
    expect((await par({ response_mode: 'form_post' })).json.error).toBe('invalid_request');
  });

  it('refuses an unknown scope, two licenses, and no license', async () => {
    const unknown = await par({ scope: 'https://registry.core.trust.ib1.org/scheme/perseus/license/made-up/2026-03-12' });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error).toBe('invalid_scope');
    const two = await par({ scope: `${LICENSE_EMISSIONS} https://registry.core.trust.ib1.org/scheme/perseus/license/energy-consumption-edp-cap/2026-03-12` });
    expect(two.json.error).toBe('invalid_scope');
    const openid = await par({ scope: 'openid' });
    expect(openid.json.error).toBe('invalid_scope');
  });

  it('refuses a redirect URI that is not https', async () => {
    const res = await par({ redirect_uri: 'http://bank.example/callback' });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_request');
  });

  it('refuses machine requests without a client certificate: 401 invalid_client', async () => {
    for (const path of ['/par', '/token', '/revoke', '/introspect']) {
      const res = await postForm(`${server.mtlsOrigin}${path}`, { client_id: bankCredentials.applicationUrl, token: 'x' }, undefined, tf.serverCa);
      expect(res.status, path).toBe(401);
      expect(res.json.error, path).toBe('invalid_client');
    }
  });

  it('refuses a certificate from another CA: 401 invalid_client', async () => {
    const impostor = await tf.foreignMember(bankCredentials.applicationUrl, ['financial-service-provider']);
    const res = await par({}, impostor);
    expect(res.status).toBe(401);
    expect(res.json.error).toBe('invalid_client');
  });

  it('refuses an expired certificate from the trusted issuer: 401 invalid_client', async () => {
    const expired = await tf.expiredMember(bankCredentials.applicationUrl, ['financial-service-provider']);
    const res = await par({}, expired);
    expect(res.status).toBe(401);
    expect(res.json.error).toBe('invalid_client');
    expect(String(res.json.error_description)).toMatch(/expired/);
  });

  it('has no OpenID Connect endpoints on either origin', async () => {
    for (const origin of [server.issuer, server.mtlsOrigin]) {
      for (const path of ['/me', '/reg', '/session/end', '/.well-known/openid-configuration']) {
        const res = await postForm(`${origin}${path}`, {}, bankCredentials, tf.serverCa);
        expect(res.status, `${origin}${path}`).toBeGreaterThanOrEqual(400);
        expect(res.status, `${origin}${path}`).toBeLessThan(500);
      }
    }
  });

  it('refuses a client_id that is not the URL in the certificate: 401 invalid_client', async () => {
    const res = await postForm(`${server.mtlsOrigin}/par`, {
      client_id: 'https://directory.example/a/bank-two', response_type: 'code', redirect_uri: BANK_REDIRECT, scope: LICENSE_EMISSIONS,
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
    }, bankCredentials, tf.serverCa);
    expect(res.status).toBe(401);
    expect(res.json.error).toBe('invalid_client');
  });

  it('refuses a certificate without the role the license needs: 403 unauthorized_client', async () => {
    const cap = await tf.member('https://directory.example/a/not-a-bank', ['carbon-accounting-provider'], 'Not A Bank Ltd');
    const res = await par({}, cap);
    expect(res.status).toBe(403);
    expect(res.json.error).toBe('unauthorized_client');
    expect(String(res.json.error_description)).toContain('financial-service-provider');
  });

  it('serves machine endpoints only on the mTLS origin', async () => {
    const res = await postForm(`${server.issuer}/token`, { grant_type: 'authorization_code' }, undefined, tf.serverCa);
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_request');
    expect(String(res.json.error_description)).toContain(server.mtlsOrigin);
  });

  it('refuses a wrong code_verifier', async () => {
    const { code } = await codeFor(bank);
    const res = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: BANK_REDIRECT, code_verifier: oauth.randomPKCECodeVerifier() });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_grant');
  });

  it('refuses a redirect_uri at the token endpoint that differs from the pushed one', async () => {
    const { code, pushed } = await codeFor(bank);
    const res = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: 'https://bank.example/other', code_verifier: pushed.codeVerifier });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_grant');
  });

  it('refuses a reused code and kills the tokens the first use issued', async () => {
    const { code, pushed } = await codeFor(bank);
    const form = { grant_type: 'authorization_code', code, redirect_uri: BANK_REDIRECT, code_verifier: pushed.codeVerifier };
    const first = await tokenRequest(form);
    expect(first.status).toBe(200);
    const accessToken = String(first.json.access_token);
    expect((await oauth.tokenIntrospection(dataProvider.config, accessToken)).active).toBe(true);
    const second = await tokenRequest(form);
    expect(second.status).toBe(400);
    expect(second.json.error).toBe('invalid_grant');
    expect((await oauth.tokenIntrospection(dataProvider.config, accessToken)).active).toBe(false);
    expect((await oauth.tokenIntrospection(dataProvider.config, String(first.json.refresh_token))).active).toBe(false);
  });

  it('refuses a code older than 60 seconds', async () => {
    const { code, pushed } = await codeFor(bank);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 61_000);
    const res = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: BANK_REDIRECT, code_verifier: pushed.codeVerifier });
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_grant');
  });

  it('refuses a code presented by another client', async () => {
    const { code, pushed } = await codeFor(bank);
    const other = await tf.member('https://directory.example/a/bank-three', ['financial-service-provider'], 'Bank Three plc');
    const res = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: BANK_REDIRECT, code_verifier: pushed.codeVerifier }, other);
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_grant');
  });

  it("refuses another client's request_uri at the authorization endpoint", async () => {
    const pushed = await pushAuthorization(bank);
    const stolen = new URL(pushed.authorizationUrl);
    stolen.searchParams.set('client_id', otherBank.credentials.applicationUrl);
    const res = await new HttpBrowser(server.issuer, tf.serverCa).navigate(stolen.href);
    expect(res.leftTo).toBeUndefined();
    expect(res.status).toBe(400);
    expect(res.html).toMatch(/invalid_request_uri|invalid_request/);
  });

  it('refuses a request_uri older than 60 seconds', async () => {
    const pushed = await pushAuthorization(bank);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 61_000);
    const res = await new HttpBrowser(server.issuer, tf.serverCa).navigate(pushed.authorizationUrl.href);
    expect(res.leftTo).toBeUndefined();
    expect(res.status).toBe(400);
    expect(res.html).toMatch(/invalid_request_uri|invalid_request/);
  });

  it("refuses to revoke another client's token, which stays active", async () => {
    const { code, pushed } = await codeFor(bank);
    const tokens = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: BANK_REDIRECT, code_verifier: pushed.codeVerifier });
    const res = await postForm(`${server.mtlsOrigin}/revoke`, { client_id: otherBank.credentials.applicationUrl, token: String(tokens.json.refresh_token) }, otherBank.credentials, tf.serverCa);
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('unauthorized_client');
    expect((await oauth.tokenIntrospection(dataProvider.config, String(tokens.json.access_token))).active).toBe(true);
  });

  it('lets only the configured resource servers introspect: 403 unauthorized_client for a bank', async () => {
    const { code, pushed } = await codeFor(bank);
    const tokens = await tokenRequest({ grant_type: 'authorization_code', code, redirect_uri: BANK_REDIRECT, code_verifier: pushed.codeVerifier });
    const res = await postForm(`${server.mtlsOrigin}/introspect`, { client_id: bankCredentials.applicationUrl, token: String(tokens.json.access_token) }, bankCredentials, tf.serverCa);
    expect(res.status).toBe(403);
    expect(res.json.error).toBe('unauthorized_client');
    expect(res.json).not.toHaveProperty('active');
  });

  it('answers a wrong password and an unknown email with the same page', async () => {
    const answers: string[] = [];
    for (const [email, password] of [[SME.email, 'not the password'], ['nobody@nowhere.example', 'whatever it is']]) {
      const pushed = await pushAuthorization(bank);
      const browser = new HttpBrowser(server.issuer, tf.serverCa);
      const signIn = await browser.navigate(pushed.authorizationUrl.href);
      const { hiddenField, formAction } = await import('../support/http-browser.ts');
      const res = await browser.navigate(formAction(signIn.html, '/sign-in'), { form: { csrf: hiddenField(signIn.html, 'csrf'), email, password } });
      expect(res.status).toBe(401);
      answers.push(/<p class="error"[^>]*>([^<]*)</.exec(res.html)?.[1] ?? '');
    }
    expect(answers[0]).toBeTruthy();
    expect(answers[0]).toBe(answers[1]);
  });

  it('refuses a sign-in form without its CSRF token', async () => {
    const pushed = await pushAuthorization(bank);
    const browser = new HttpBrowser(server.issuer, tf.serverCa);
    const signIn = await browser.navigate(pushed.authorizationUrl.href);
    const { formAction } = await import('../support/http-browser.ts');
    const res = await browser.navigate(formAction(signIn.html, '/sign-in'), { form: { csrf: 'forged', email: SME.email, password: SME.password } });
    expect(res.status).toBe(403);
    expect(res.leftTo).toBeUndefined();
  });
});
