import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { TrustedProxies } from '../../src/http/trusted-proxies.ts';
import { roleUrl } from '../../src/pki/dev-trust-framework.ts';
import { permissionGuard, type PermissionGuard } from '../../src/resource-server/guard.ts';
import { Introspector, tokenKey } from '../../src/resource-server/introspection.ts';
import type { RunningResourceServer } from '../../src/resource-server/listener.ts';
import { freePort, startTestServer, type TestServer } from '../support/server.ts';
import { oauthClient, type OAuthClient } from '../support/oauth-client.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';
import { call, grant, guardOptions, LICENSE_CONSUMPTION, LICENSE_EMISSIONS, startEcho, waitFor } from './support.ts';

const SME = { email: 'owner@dairy.example', password: 'milk and honey all day', organisation: 'Hillside Dairy Ltd' };

describe('permissionGuard in front of a data API, against the real authorization server', () => {
  let tf: TestTrustFramework;
  let server: TestServer;
  let capCredentials: ClientCredentials;
  let otherCapCredentials: ClientCredentials;
  let bankCredentials: ClientCredentials;
  let apiCredentials: ClientCredentials;
  let cap: OAuthClient;
  let otherCap: OAuthClient;
  let bank: OAuthClient;
  const guards: PermissionGuard[] = [];
  const listeners: RunningResourceServer[] = [];
  const refusals: Array<Record<string, unknown>> = [];
  let api: RunningResourceServer;

  async function guarded(extra: Parameters<typeof guardOptions>[4] = {}, licenses = [LICENSE_CONSUMPTION]) {
    const guard = permissionGuard(guardOptions(tf, server, apiCredentials, licenses, { cacheSeconds: 0, log: (line) => refusals.push(line), ...extra }));
    guards.push(guard);
    const listener = await startEcho(tf, guard);
    listeners.push(listener);
    return listener;
  }

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    capCredentials = await tf.member('https://directory.example/a/carbon-calc', ['carbon-accounting-provider'], 'Carbon Calc Ltd');
    otherCapCredentials = await tf.member('https://directory.example/a/other-cap', ['carbon-accounting-provider'], 'Other CAP Ltd');
    bankCredentials = await tf.member('https://directory.example/a/green-loans', ['financial-service-provider'], 'Example Bank plc');
    apiCredentials = await tf.member('https://directory.example/a/meter-data-api', ['energy-data-provider'], 'Demo Energy Ltd');
    server = await startTestServer(tf, {
      OPERATOR_ROLE: 'energy-data-provider', OPERATOR_NAME: 'Demo Energy Ltd',
      LICENSES: `${LICENSE_CONSUMPTION},${LICENSE_EMISSIONS}`, RESOURCE_SERVERS: apiCredentials.applicationUrl,
    });
    await server.smeAccounts.addSme({ ...SME, meters: ['1012345678901:SW1A', 'gas:1234567:SW1A'] });
    cap = await oauthClient(server.issuer, capCredentials, tf.serverCa);
    otherCap = await oauthClient(server.issuer, otherCapCredentials, tf.serverCa);
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    api = await guarded();
  });
  afterAll(async () => {
    for (const listener of listeners) await listener.close();
    for (const guard of guards) guard.close();
    await server?.close();
  });

  const get = (url: string, credentials: ClientCredentials | undefined, token?: string, headers?: Record<string, string>) =>
    call(url, { credentials, serverCa: tf.serverCa, token, headers });

  it('lets a valid token with its own certificate through, and tells the handler the permission', async () => {
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    const res = await get(`${api.url}/anything`, capCredentials, tokens.access_token);
    expect(res.status).toBe(200);
    const permission = res.json.permission as Record<string, unknown>;
    expect(permission).toMatchObject({ clientId: capCredentials.applicationUrl, license: LICENSE_CONSUMPTION });
    expect(permission.account).toMatch(/^acct_/);
    expect(permission.meters).toEqual(expect.arrayContaining([
      { id: '1012345678901', type: 'electricity', ukPostcodeOutcode: 'SW1A' },
      { id: '1234567', type: 'gas', ukPostcodeOutcode: 'SW1A' },
    ]));
    const now = new Date();
    const thisMonth = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const period = permission.dataPeriod as { from: string; to: string };
    expect(new Date(period.to).getTime()).toBe(thisMonth.getTime());
    expect(new Date(period.from).getTime()).toBe(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 12, 1));
    expect(new Date(permission.expires as string).getTime()).toBeGreaterThan(Date.now());
  });

  it('asks for a token when there is none (401 without an error code), and for the Bearer scheme', async () => {
    const none = await get(`${api.url}/anything`, capCredentials);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="perseus"');
    const basic = await get(`${api.url}/anything`, capCredentials, undefined, { authorization: 'Basic Zm9vOmJhcg==' });
    expect(basic.status).toBe(401);
    const malformed = await get(`${api.url}/anything`, capCredentials, undefined, { authorization: 'Bearer a b"c' });
    expect(malformed.status).toBe(400);
    expect(malformed.json.error).toBe('invalid_request');
  });

  it('refuses a token in the query string or in a form body with invalid_request', async () => {
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    for (const res of [
      await get(`${api.url}/anything?access_token=${encodeURIComponent(tokens.access_token)}`, capCredentials),
      // Even alongside a proper header: the token has leaked into a URL.
      await get(`${api.url}/anything?access_token=${encodeURIComponent(tokens.access_token)}`, capCredentials, tokens.access_token),
      await call(`${api.url}/anything`, { credentials: capCredentials, serverCa: tf.serverCa, method: 'POST', form: { access_token: tokens.access_token } }),
    ]) {
      expect(res.status).toBe(400);
      expect(res.json.error).toBe('invalid_request');
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="perseus", error="invalid_request"/);
    }
    // A form without a token is read once and left for the handler.
    const form = await call(`${api.url}/anything`, { credentials: capCredentials, serverCa: tf.serverCa, method: 'POST', form: { note: 'hello' }, token: tokens.access_token });
    expect(form.status).toBe(200);
    expect(form.json.form).toEqual({ note: 'hello' });
  });

  it("refuses another client's certificate with a valid token (client_id mismatch), a re-issued certificate (cnf), and no certificate", async () => {
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    const stolen = await get(`${api.url}/anything`, otherCapCredentials, tokens.access_token);
    expect(stolen.status).toBe(401);
    expect(stolen.json.error).toBe('invalid_token');
    expect(String(stolen.json.error_description)).toContain('another client application');
    expect(stolen.headers.get('www-authenticate')).toMatch(/^Bearer realm="perseus", error="invalid_token", error_description="/);

    // Same application URL, another key pair: the token is bound to the first certificate's thumbprint.
    const reissued = await tf.member(capCredentials.applicationUrl, ['carbon-accounting-provider'], 'Carbon Calc Ltd');
    const rebound = await get(`${api.url}/anything`, reissued, tokens.access_token);
    expect(rebound.status).toBe(401);
    expect(String(rebound.json.error_description)).toContain('bound to another certificate');

    const anonymous = await get(`${api.url}/anything`, undefined, tokens.access_token);
    expect(anonymous.status).toBe(401);
    expect(anonymous.json.error).toBe('invalid_token');
    const foreign = await get(`${api.url}/anything`, await tf.foreignMember(capCredentials.applicationUrl, ['carbon-accounting-provider']), tokens.access_token);
    expect(foreign.status).toBe(401);
    expect(String(foreign.json.error_description)).toContain('does not chain');
  });

  it('refuses a refresh token presented as a bearer token', async () => {
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    const res = await get(`${api.url}/anything`, capCredentials, tokens.refresh_token);
    expect(res.status).toBe(401);
    expect(res.json.error).toBe('invalid_token');
  });

  it('refuses a token granted under a license this API does not serve (403 insufficient_scope)', async () => {
    const tokens = await grant(server, tf, bank, SME, LICENSE_EMISSIONS);
    const res = await get(`${api.url}/anything`, bankCredentials, tokens.access_token);
    expect(res.status).toBe(403);
    expect(res.json.error).toBe('insufficient_scope');
    expect(res.headers.get('www-authenticate')).toContain(`scope="${LICENSE_CONSUMPTION}"`);
  });

  it('refuses a certificate without the role the license requires (403)', async () => {
    // This API says its license needs the bank role, which the carbon-accounting provider lacks.
    const strict = await guarded({ licenseRoles: { [LICENSE_CONSUMPTION]: 'financial-service-provider' } });
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    const res = await get(`${strict.url}/anything`, capCredentials, tokens.access_token);
    expect(res.status).toBe(403);
    expect(res.json.error).toBe('insufficient_scope');
    expect(String(res.json.error_description)).toContain(roleUrl('financial-service-provider'));
  });

  it('refuses a withdrawn permission at once without a cache', async () => {
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    expect((await get(`${api.url}/anything`, capCredentials, tokens.access_token)).status).toBe(200);
    await oauth.tokenRevocation(cap.config, tokens.refresh_token!);
    const res = await get(`${api.url}/anything`, capCredentials, tokens.access_token);
    expect(res.status).toBe(401);
    expect(res.json.error).toBe('invalid_token');
  });

  it('refuses a withdrawn permission within the cache lifetime (1 s) when answers are cached', async () => {
    const cached = await guarded({ cacheSeconds: 1 });
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    const cachedAt = Date.now();
    expect((await get(`${cached.url}/anything`, capCredentials, tokens.access_token)).status).toBe(200);
    // The SME withdraws at its dashboard (the operator's domain call behind it).
    const organisation = await server.smeAccounts.findOrganisation(SME.organisation);
    const permissions = await server.permissions.store.byOrganisation(organisation!.id);
    const active = permissions.filter((p) => p.clientId === capCredentials.applicationUrl && !p.revoked);
    for (const p of active) await server.permissions.withdraw(p.id, 'sme', 'usr_test', 'test withdrawal');
    const right = await get(`${cached.url}/anything`, capCredentials, tokens.access_token);
    // Still inside the cache lifetime, the cached answer may be served; never beyond it.
    if (Date.now() - cachedAt < 900) expect(right.status).toBe(200);
    const refusedAt = await waitFor('the refusal', async () => {
      const res = await get(`${cached.url}/anything`, capCredentials, tokens.access_token);
      return res.status === 401 ? Date.now() : undefined;
    }, 5_000, 25);
    expect(refusedAt - cachedAt).toBeLessThanOrEqual(1_000 + 250);
    // Without a cache, the same moment is refused immediately.
    expect((await get(`${api.url}/anything`, capCredentials, tokens.access_token)).status).toBe(401);
  });

  it('fails closed with 503 and Retry-After when the authorization server cannot be reached', async () => {
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    const closedPort = await freePort();
    const unreachable = await guarded({ introspection: { url: `https://localhost:${closedPort}/introspect`, cert: apiCredentials.cert, key: apiCredentials.key, ca: tf.serverCa }, retryAfterSeconds: 7 });
    const refused = await get(`${unreachable.url}/anything`, capCredentials, tokens.access_token);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('7');
    expect(refused.json.error).toBe('temporarily_unavailable');

    // A server that accepts the connection and never answers.
    const silent: TcpServer = createTcpServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const hanging = await guarded({ introspection: { url: `https://localhost:${(silent.address() as AddressInfo).port}/introspect`, cert: apiCredentials.cert, key: apiCredentials.key, ca: tf.serverCa, timeoutMs: 300 } });
      const res = await get(`${hanging.url}/anything`, capCredentials, tokens.access_token);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('10');
    } finally {
      silent.close();
    }

    // A resource server the authorization server does not let introspect is an outage too, never a pass.
    const notListed = await tf.member('https://directory.example/a/not-a-resource-server', ['energy-data-provider'], 'Nobody Ltd');
    const unlisted = await guarded({ introspection: { url: `${server.mtlsOrigin}/introspect`, cert: notListed.cert, key: notListed.key, ca: tf.serverCa } });
    expect((await get(`${unlisted.url}/anything`, capCredentials, tokens.access_token)).status).toBe(503);
  });

  it('reads the client certificate from a trusted proxy header, and ignores that header from anyone else', async () => {
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    const header = 'x-amzn-mtls-clientcert-leaf';
    const leafPem = capCredentials.cert.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)![0];
    const forwarded = { [header]: encodeURIComponent(leafPem) };
    const behindProxy = await guarded({ proxyCertificate: { proxies: TrustedProxies.parse('127.0.0.1,::1'), header } });
    // The "proxy" (this test, from 127.0.0.1) presents no certificate of its own and forwards the client's.
    expect((await get(`${behindProxy.url}/anything`, undefined, tokens.access_token, forwarded)).status).toBe(200);
    // From a trusted proxy that forwards no certificate, the socket's own certificate does not count.
    expect((await get(`${behindProxy.url}/anything`, capCredentials, tokens.access_token)).status).toBe(401);
    // Untrusted peers: the header is stripped.
    const direct = await guarded({ proxyCertificate: { proxies: TrustedProxies.parse('10.9.9.9'), header } });
    expect((await get(`${direct.url}/anything`, undefined, tokens.access_token, forwarded)).status).toBe(401);
  });

  it('never logs a token', async () => {
    const tokens = await grant(server, tf, cap, SME, LICENSE_CONSUMPTION);
    await get(`${api.url}/anything?access_token=${tokens.access_token}`, capCredentials);
    await get(`${api.url}/anything`, otherCapCredentials, tokens.access_token);
    const log = JSON.stringify(refusals);
    expect(refusals.length).toBeGreaterThan(0);
    expect(log).not.toContain(tokens.access_token);
  });
});

describe('the introspection cache', () => {
  let tf: TestTrustFramework;
  let fake: https.Server;
  let url: string;
  let calls = 0;
  let answer: Record<string, unknown> = {};
  let api: ClientCredentials;

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    api = await tf.member('https://directory.example/a/meter-data-api', ['energy-data-provider'], 'Demo Energy Ltd');
    fake = https.createServer({ ...tf.serverTls }, (req, res) => {
      req.resume();
      req.on('end', () => {
        calls += 1;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      });
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    url = `https://localhost:${(fake.address() as AddressInfo).port}/introspect`;
  });
  afterAll(() => {
    fake?.close();
  });

  it('keeps answers at most 60 s whatever is configured, never past the token exp, keyed by a hash', async () => {
    let clock = Date.UTC(2026, 0, 10, 12);
    const introspector = new Introspector({ url, cert: api.cert, key: api.key, ca: tf.serverCa, cacheSeconds: 600, now: () => new Date(clock) });
    try {
      expect(introspector.clientId).toBe(api.applicationUrl);
      answer = { active: true, exp: clock / 1000 + 3600 };
      calls = 0;
      await introspector.introspect('token-one');
      clock += 59_000;
      await introspector.introspect('token-one');
      expect(calls).toBe(1);
      clock += 2_000;
      await introspector.introspect('token-one');
      expect(calls).toBe(2);

      answer = { active: true, exp: clock / 1000 + 10 };
      await introspector.introspect('token-two');
      clock += 9_000;
      await introspector.introspect('token-two');
      expect(calls).toBe(3);
      clock += 1_500;
      await introspector.introspect('token-two');
      expect(calls).toBe(4);

      // Concurrent requests with one token make one call.
      await Promise.all([1, 2, 3].map(() => introspector.introspect('token-three')));
      expect(calls).toBe(5);
    } finally {
      introspector.close();
    }
    expect(tokenKey('token-one')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(tokenKey('token-one')).not.toContain('token-one');
  });

  it('does not cache with 0 seconds', async () => {
    const introspector = new Introspector({ url, cert: api.cert, key: api.key, ca: tf.serverCa, cacheSeconds: 0 });
    try {
      answer = { active: false };
      calls = 0;
      await introspector.introspect('t');
      await introspector.introspect('t');
      expect(calls).toBe(2);
    } finally {
      introspector.close();
    }
  });
});
