import { createHash, X509Certificate } from 'node:crypto';

import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { smeDecides, pushAuthorization, LICENSE_EMISSIONS, BANK_REDIRECT } from '../support/flows.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { oauthClient, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServer, startTestServerOn, storageUnderTest, type StorageUnderTest, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const SME = { email: 'owner@bakery.example', password: 'correct horse battery', organisation: 'Riverside Bakery Ltd' };

describe.each(['sqlite', 'mongo'] as const)('a bank obtains, uses and revokes a permission through the real listeners (STORAGE=%s)', (storageKind) => {
  let storage: StorageUnderTest;
  let tf: TestTrustFramework;
  let server: TestServer;
  let bankCredentials: ClientCredentials;
  let bank: OAuthClient;
  let dataProvider: OAuthClient;
  const logLines: string[] = [];
  const env: Record<string, string> = {};

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    bankCredentials = await tf.member('https://directory.example/a/green-loans', ['financial-service-provider'], 'Example Bank plc', 'Green Loans');
    const apiCredentials = await tf.member('https://directory.example/a/emissions-api', ['carbon-accounting-provider'], 'Demo Carbon Accounting Ltd');
    storage = await storageUnderTest(storageKind);
    Object.assign(env, storage.env, { RESOURCE_SERVERS: apiCredentials.applicationUrl, OPERATOR_NAME: 'Demo Carbon Accounting Ltd' });
    server = await startTestServerOn(storage, tf, env, { log: (line) => logLines.push(JSON.stringify(line)) });
    await server.smeAccounts.addSme({ ...SME, meters: ['1012345678901:SW1A', 'gas:1234567:SW1A'] });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    dataProvider = await oauthClient(server.issuer, apiCredentials, tf.serverCa);
  });
  afterAll(async () => {
    await server?.close();
    await storage?.stop();
  });

  it('publishes RFC 8414 metadata with every value the IB1 profile requires', () => {
    const md = bank.config.serverMetadata();
    expect(md.issuer).toBe(server.issuer);
    expect(md.response_types_supported).toEqual(['code']);
    expect(md.code_challenge_methods_supported).toEqual(['S256']);
    expect(md.grant_types_supported).toEqual(['authorization_code', 'refresh_token']);
    expect(md.token_endpoint_auth_methods_supported).toEqual(['tls_client_auth']);
    expect(md.revocation_endpoint_auth_methods_supported).toEqual(['tls_client_auth']);
    expect(md.require_pushed_authorization_requests).toBe(true);
    expect(md.tls_client_certificate_bound_access_tokens).toBe(true);
    expect(md.authorization_response_iss_parameter_supported).toBe(true);
    expect(md.use_mtls_endpoint_aliases).toBe(true);
    expect(md.authorization_endpoint).toBe(`${server.issuer}/authorize`);
    expect(md.token_endpoint).toBe(`${server.mtlsOrigin}/token`);
    expect(md.scopes_supported).toEqual([LICENSE_EMISSIONS]);
    const aliases = md.mtls_endpoint_aliases as Record<string, string>;
    const endpoints = Object.entries(md).filter(([k]) => k.endsWith('_endpoint'));
    expect(endpoints.map(([k]) => k)).toEqual(expect.arrayContaining(['pushed_authorization_request_endpoint', 'token_endpoint', 'revocation_endpoint', 'introspection_endpoint', 'ib1_permission_endpoint']));
    for (const [key, value] of endpoints) expect(aliases[key]).toBe(value);
    expect(Object.keys(aliases).sort()).toEqual(endpoints.map(([k]) => k).sort());
    // No OpenID Connect surface.
    for (const oidcKey of ['userinfo_endpoint', 'registration_endpoint', 'id_token_signing_alg_values_supported', 'claims_supported']) {
      expect(md).not.toHaveProperty(oidcKey);
    }
  });

  it('does not serve an OpenID Connect discovery document', async () => {
    const res = await fetch(`${server.issuer}/.well-known/openid-configuration`, { dispatcher: bank.agent } as never);
    expect(res.status).toBe(404);
  });

  it('runs PAR, sign-in and consent, token exchange, refresh, introspection and revocation', async () => {
    const pushed = await pushAuthorization(bank);
    expect([...pushed.authorizationUrl.searchParams.keys()].sort()).toEqual(['client_id', 'request_uri']);

    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    expect(callback.origin + callback.pathname).toBe(BANK_REDIRECT);
    expect(callback.searchParams.get('iss')).toBe(server.issuer);
    expect(callback.searchParams.get('state')).toBe(pushed.state);
    expect(callback.searchParams.get('code')).toBeTruthy();

    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    expect(tokens.token_type.toLowerCase()).toBe('bearer');
    expect(tokens.scope).toBe(LICENSE_EMISSIONS);
    expect(tokens.refresh_token).toBeTruthy();
    expect(tokens.id_token).toBeUndefined();
    expect(tokens.expires_in).toBeLessThanOrEqual(3600);
    // Opaque: not a JWT.
    expect(tokens.access_token.split('.')).toHaveLength(1);

    const introspected = await oauth.tokenIntrospection(dataProvider.config, tokens.access_token);
    const thumbprint = createHash('sha256').update(new X509Certificate(bankCredentials.cert).raw).digest('base64url');
    expect(introspected).toMatchObject({
      active: true,
      client_id: bankCredentials.applicationUrl,
      scope: LICENSE_EMISSIONS,
      cnf: { 'x5t#S256': thumbprint },
    });
    expect(introspected.exp).toBeGreaterThan(Date.now() / 1000);
    expect(introspected.account).toMatch(/^acct_/);
    expect(introspected.sub).toBe(introspected.account);

    const refreshed = await oauth.refreshTokenGrant(bank.config, tokens.refresh_token!);
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    // Refresh tokens are not rotated.
    expect(refreshed.refresh_token ?? tokens.refresh_token).toBe(tokens.refresh_token);
    expect((await oauth.tokenIntrospection(dataProvider.config, refreshed.access_token)).active).toBe(true);

    await oauth.tokenRevocation(bank.config, tokens.refresh_token!);
    expect((await oauth.tokenIntrospection(dataProvider.config, refreshed.access_token)).active).toBe(false);
    expect((await oauth.tokenIntrospection(dataProvider.config, tokens.access_token)).active).toBe(false);
    await expect(oauth.refreshTokenGrant(bank.config, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('gives the same SME a different opaque account with another client', async () => {
    const other = await tf.member('https://directory.example/a/other-bank', ['financial-service-provider'], 'Other Bank plc');
    const otherBank = await oauthClient(server.issuer, other, tf.serverCa);
    const accounts: string[] = [];
    for (const client of [bank, otherBank]) {
      const pushed = await pushAuthorization(client);
      const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
      const tokens = await oauth.authorizationCodeGrant(client.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
      accounts.push(String((await oauth.tokenIntrospection(dataProvider.config, tokens.access_token)).account));
    }
    expect(accounts[0]).not.toBe(accounts[1]);
    for (const account of accounts) expect(account).not.toContain('org_');
  });

  it('keeps tokens and permissions across a restart on the embedded store', async () => {
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    const ports: [number, number] = [server.publicPort, server.mtlsPort];
    await server.close();
    server = await startTestServer(tf, env, { ports, log: (line) => logLines.push(JSON.stringify(line)) });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    dataProvider = await oauthClient(server.issuer, dataProvider.credentials, tf.serverCa);
    expect((await oauth.tokenIntrospection(dataProvider.config, tokens.access_token)).active).toBe(true);
    const refreshed = await oauth.refreshTokenGrant(bank.config, tokens.refresh_token!);
    expect((await oauth.tokenIntrospection(dataProvider.config, refreshed.access_token)).active).toBe(true);
  });

  it('never writes a token, code, password, request_uri or cookie to its log', async () => {
    const pushed = await pushAuthorization(bank);
    const requestUri = pushed.authorizationUrl.searchParams.get('request_uri')!;
    const browser = new HttpBrowser(server.issuer, tf.serverCa);
    const callback = await smeDecides(browser, pushed.authorizationUrl, SME);
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    await oauth.refreshTokenGrant(bank.config, tokens.refresh_token!);
    await oauth.tokenIntrospection(dataProvider.config, tokens.access_token);
    await oauth.tokenRevocation(bank.config, tokens.refresh_token!);
    const log = logLines.join('\n');
    expect(logLines.length).toBeGreaterThan(10);
    for (const secret of [tokens.access_token, tokens.refresh_token!, callback.searchParams.get('code')!, SME.password, requestUri, pushed.codeVerifier, requestUri.split(':').at(-1)!]) {
      expect(log).not.toContain(secret);
    }
    expect(log).not.toMatch(/_session|_interaction|cookie/i);
  });

  it('returns access_denied with iss when the SME denies', async () => {
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME, 'deny');
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('iss')).toBe(server.issuer);
    expect(callback.searchParams.get('state')).toBe(pushed.state);
    expect(callback.searchParams.get('code')).toBeNull();
  });
});
