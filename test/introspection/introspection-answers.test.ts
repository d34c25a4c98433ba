import { Readable } from 'node:stream';

import * as oauth from 'openid-client';
import { request, type Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { loadConfig } from '../../src/config/environment.ts';
import { silentSink } from '../../src/http/request-log.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { pushAuthorization, smeDecides } from '../support/flows.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { mtlsAgent, oauthClient, type OAuthClient } from '../support/oauth-client.ts';
import { freePort, startTestServerOn, storageUnderTest, type StorageUnderTest, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const SME = { email: 'energy@bakery.example', password: 'a long enough password', organisation: 'Corner Bakery Ltd' };

interface Answer { status: number; body: string; headers: Record<string, string | undefined> }

/**
 * endpoints/introspection.ts answers introspection itself for the requests data providers send,
 * and hands every other request to the library. Both servers here share one store (the embedded
 * one, or MongoDB + Redis) and one issuer; `library` answers every introspection with oidc-provider's own endpoint. Every
 * request below must get the same status, body and headers from both.
 */
describe.each(['sqlite', 'mongo'] as const)('introspection answers the same as the library’s own endpoint (%s)', (kind) => {
  let storage: StorageUnderTest;
  let tf: TestTrustFramework;
  let server: TestServer;
  let library: RunningServer;
  let libraryOrigin: string;
  let api: ClientCredentials;
  let bank: OAuthClient;
  let apiAgent: Agent;
  let tokens: { access: string; refresh: string };

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    const bankCredentials = await tf.member('https://directory.example/a/bakery-bank', ['financial-service-provider'], 'Bakery Bank plc');
    api = await tf.member('https://directory.example/a/emissions-api', ['carbon-accounting-provider'], 'Demo CAP Ltd');
    storage = await storageUnderTest(kind);
    const env = { ...storage.env, RESOURCE_SERVERS: api.applicationUrl };
    server = await startTestServerOn(storage, tf, env);
    const mtlsPort = await freePort();
    library = await startServer(loadConfig({
      ISSUER: server.issuer, MTLS_ORIGIN: server.mtlsOrigin, DATA_DIR: tf.dataDir, PUBLIC_PORT: String(await freePort()), MTLS_PORT: String(mtlsPort), ...env,
    }), { log: silentSink, libraryIntrospection: true });
    libraryOrigin = `https://localhost:${mtlsPort}`;
    await server.smeAccounts.addSme({ ...SME, meters: ['2000000000001:LS1', '9100000000001:LS1'] });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    apiAgent = mtlsAgent(api, tf.serverCa);
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    const granted = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    tokens = { access: granted.access_token, refresh: granted.refresh_token! };
  });
  afterAll(async () => {
    await library?.close();
    await server?.close();
    await storage?.stop();
  });

  async function ask(origin: string, options: { body?: string | (() => Readable); method?: string; headers?: Record<string, string>; agent?: Agent }): Promise<Answer> {
    const body = typeof options.body === 'function' ? options.body() : options.body;
    const res = await request(`${origin}/introspect`, {
      method: (options.method ?? 'POST') as 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...options.headers },
      body,
      dispatcher: options.agent ?? apiAgent,
    });
    const text = await res.body.text();
    const headers: Answer['headers'] = {};
    for (const name of ['content-type', 'cache-control', 'www-authenticate', 'content-length', 'pragma', 'allow']) {
      const value = res.headers[name];
      headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    return { status: res.statusCode, body: text, headers };
  }

  /** Both servers' answers; they must be equal. */
  async function both(options: Parameters<typeof ask>[1]): Promise<Answer> {
    const ours = await ask(server.mtlsOrigin, options);
    const theirs = await ask(libraryOrigin, options);
    expect(ours).toEqual(theirs);
    return ours;
  }

  const form = (fields: [string, string][]) => fields.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');

  function storeOperations(metrics: RunningServer['metrics'], model: string, operation: string): number {
    const values = (metrics.registry.getSingleMetric('perseus_store_operation_duration_seconds') as unknown as { hashMap: Record<string, { labels: Record<string, string>; count: number }> }).hashMap;
    return Object.values(values).filter((v) => v.labels.model === model && v.labels.operation === operation).reduce((sum, v) => sum + v.count, 0);
  }
  const refreshTokenFinds = (metrics: RunningServer['metrics']) => storeOperations(metrics, 'RefreshToken', 'find');

  it('an active access token: the Perseus members, the certificate binding, the same JSON byte for byte', async () => {
    const answer = await both({ body: form([['token', tokens.access], ['client_id', api.applicationUrl]]) });
    expect(answer.status).toBe(200);
    const json = JSON.parse(answer.body);
    expect(json).toMatchObject({ active: true, token_type: 'Bearer', iss: server.issuer, client_id: 'https://directory.example/a/bakery-bank' });
    expect(json.cnf['x5t#S256']).toMatch(/^[\w-]{43}$/);
    expect(json.meters).toHaveLength(2);
    expect(json.data_period).toEqual({ from: expect.any(String), to: expect.any(String) });
  });

  it('is answered by this server’s own path: no refresh-token lookup for an access token, which the library always makes', async () => {
    const before = { ours: refreshTokenFinds(server.metrics), theirs: refreshTokenFinds(library.metrics) };
    await both({ body: form([['token', tokens.access], ['client_id', api.applicationUrl]]) });
    expect(refreshTokenFinds(server.metrics)).toBe(before.ours);
    expect(refreshTokenFinds(library.metrics)).toBe(before.theirs + 1);
  });

  it('on the embedded store, reads an access token and its grant in one look-up; elsewhere, in two', async () => {
    const counts = () => ({ joined: storeOperations(server.metrics, 'AccessToken', 'findWithGrant'), grants: storeOperations(server.metrics, 'Grant', 'find') });
    const before = counts();
    await both({ body: form([['token', tokens.access], ['client_id', api.applicationUrl]]) });
    const after = counts();
    if (kind === 'sqlite') expect(after).toEqual({ joined: before.joined + 1, grants: before.grants });
    else expect(after).toEqual({ joined: 0, grants: before.grants + 1 });
  });

  it('token_type_hint in its four spellings, and a refresh token (active, without token_type)', async () => {
    for (const hint of ['access_token', 'refresh_token', 'urn:ietf:params:oauth:token-type:access_token', 'urn:ietf:params:oauth:token-type:refresh_token']) {
      for (const token of [tokens.access, tokens.refresh]) {
        const answer = await both({ body: form([['token', token], ['token_type_hint', hint], ['client_id', api.applicationUrl]]) });
        expect(JSON.parse(answer.body).active).toBe(true);
      }
    }
    const refresh = JSON.parse((await both({ body: form([['client_id', api.applicationUrl], ['token', tokens.refresh]]) })).body);
    expect(refresh.active).toBe(true);
    expect(refresh.token_type).toBeUndefined();
  });

  it('unknown tokens, and tokens that only look like JWTs, are inactive or refused exactly as the library does', async () => {
    const jwtHeader = Buffer.from('{"alg":"none"}').toString('base64url');
    for (const token of ['not-a-token', 'x'.repeat(43), `${jwtHeader}.e30.`, ` ${jwtHeader}`, `e${'A'.repeat(42)}`, 'IAAA', 'CgoK', 'DQ0N', `${tokens.access}x`]) {
      const answer = await both({ body: form([['token', token], ['client_id', api.applicationUrl]]) });
      expect([200, 400]).toContain(answer.status);
    }
    const refused = await both({ body: form([['token', `${jwtHeader}.e30.`], ['client_id', api.applicationUrl]]) });
    expect(JSON.parse(refused.body).error).toBe('unsupported_token_type');
  });

  it('malformed requests get the library’s errors: missing, empty or repeated parameters, another client_id, unknown parameters', async () => {
    const cases: [string, string][][] = [
      [['client_id', api.applicationUrl]],
      [['token', ''], ['client_id', api.applicationUrl]],
      [['token', tokens.access]],
      [['token', tokens.access], ['token', tokens.access], ['client_id', api.applicationUrl]],
      [['token', tokens.access], ['client_id', api.applicationUrl], ['client_id', api.applicationUrl]],
      [['token', tokens.access], ['client_id', 'https://directory.example/a/bakery-bank']],
      [['token', tokens.access], ['client_id', api.applicationUrl], ['token_type_hint', 'id_token']],
      [['token', tokens.access], ['client_id', api.applicationUrl], ['token_type_hint', 'access_token'], ['token_type_hint', 'access_token']],
      [['token', tokens.access], ['client_id', api.applicationUrl], ['client_secret', 'x']],
      [['token', tokens.access], ['client_id', api.applicationUrl], ['resource', 'https://elsewhere.example']],
    ];
    const statuses = [];
    for (const fields of cases) statuses.push((await both({ body: form(fields) })).status);
    expect(statuses.filter((s) => s >= 400).length).toBeGreaterThanOrEqual(6);
  });

  it('other shapes of request: wrong method, JSON, a JWT answer asked for, another charset, a chunked body, bad percent-encoding', async () => {
    const good = form([['token', tokens.access], ['client_id', api.applicationUrl]]);
    await both({ method: 'GET', body: undefined });
    await both({ body: JSON.stringify({ token: tokens.access, client_id: api.applicationUrl }), headers: { 'content-type': 'application/json' } });
    await both({ body: good, headers: { accept: 'application/token-introspection+jwt' } });
    await both({ body: good, headers: { 'content-type': 'application/x-www-form-urlencoded; charset=iso-8859-1' } });
    await both({ body: good, headers: { 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' } });
    const chunked = await both({ body: () => Readable.from([Buffer.from(good.slice(0, 20)), Buffer.from(good.slice(20))]) });
    expect(JSON.parse(chunked.body).active).toBe(true);
    await both({ body: `token=%zz${tokens.access}&client_id=${encodeURIComponent(api.applicationUrl)}` });
    await both({ body: '' });
  });

  it('the connection stays usable after a request handed to the library: the body was given back, not lost', async () => {
    const agent = mtlsAgent(api, tf.serverCa);
    try {
      for (let i = 0; i < 3; i++) {
        const refused = await ask(server.mtlsOrigin, { agent, body: form([['token', tokens.access], ['token', tokens.access], ['client_id', api.applicationUrl]]) });
        expect(refused.status).toBe(400);
        const fine = await ask(server.mtlsOrigin, { agent, body: form([['token', tokens.access], ['client_id', api.applicationUrl]]) });
        expect(JSON.parse(fine.body).active).toBe(true);
      }
    } finally {
      await agent.close();
    }
  });

  it('an access token past its expiry is inactive on both paths; its refresh token is still active', async () => {
    const access = JSON.parse((await both({ body: form([['token', tokens.access], ['client_id', api.applicationUrl]]) })).body);
    // Both servers run in this process: moving its clock moves both.
    vi.useFakeTimers({ now: (access.exp - 1) * 1000, toFake: ['Date'] });
    try {
      expect(JSON.parse((await both({ body: form([['token', tokens.access], ['client_id', api.applicationUrl]]) })).body).active).toBe(true);
      vi.setSystemTime(access.exp * 1000);
      expect(JSON.parse((await both({ body: form([['token', tokens.access], ['client_id', api.applicationUrl]]) })).body)).toEqual({ active: false });
      expect(JSON.parse((await both({ body: form([['token', tokens.refresh], ['client_id', api.applicationUrl]]) })).body).active).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it('after the bank revokes its refresh token (a withdrawal), both tokens answer inactive on both paths at once', async () => {
    await oauth.tokenRevocation(bank.config, tokens.refresh);
    for (const token of [tokens.refresh, tokens.access]) {
      expect(JSON.parse((await both({ body: form([['token', token], ['client_id', api.applicationUrl]]) })).body)).toEqual({ active: false });
    }
  });
});
