// Shared by the hostile suites: a running server with a bank, a resource server and an SME; raw
// HTTPS requests that send exactly the bytes and headers given (duplicated headers, no
// content-type, invalid UTF-8 …); a cookie jar for the forms; and the properties every answer
// must have (no 5xx, RFC 6749 JSON errors from machine endpoints, HTML error pages for people).
import * as oauth from 'openid-client';
import { expect } from 'vitest';
import { Agent, request } from 'undici';

import { BANK_REDIRECT, LICENSE_EMISSIONS, pushAuthorization, smeDecides } from '../support/flows.ts';
import { formAction, hiddenField, HttpBrowser, meterChoices } from '../support/http-browser.ts';
import { oauthClient, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

export const SME = { email: 'owner@hostile-bakery.example', password: 'a long hostile password', organisation: 'Hostile Bakery Ltd' };
export const METERS = ['2000000000009:LS1', 'gas:7654321:LS1'];

export interface World {
  tf: TestTrustFramework;
  server: TestServer;
  /** financial-service-provider: may push authorization requests for the emissions license. */
  bank: ClientCredentials;
  bankClient: OAuthClient;
  /** carbon-accounting-provider listed in RESOURCE_SERVERS: may introspect. */
  dataProvider: ClientCredentials;
  agents: Map<ClientCredentials | undefined, Agent>;
  agent(credentials?: ClientCredentials): Agent;
  close(): Promise<void>;
}

/** A server with the parties every hostile suite needs. */
export async function startWorld(env: Record<string, string> = {}): Promise<World> {
  const tf = await TestTrustFramework.create();
  const bank = await tf.member('https://directory.example/a/hostile-bank', ['financial-service-provider'], 'Hostile Bank plc');
  const dataProvider = await tf.member('https://directory.example/a/hostile-api', ['carbon-accounting-provider'], 'Hostile API Ltd');
  // Rate limits off unless a suite turns them on: hostile runs must reach the code behind them.
  const server = await startTestServer(tf, {
    RESOURCE_SERVERS: dataProvider.applicationUrl, RATE_LIMIT_CLIENT: 'off', RATE_LIMIT_SIGN_IN_IP: 'off', RATE_LIMIT_SIGN_IN_ACCOUNT: 'off', ...env,
  });
  await server.smeAccounts.addSme({ ...SME, meters: METERS });
  const agents = new Map<ClientCredentials | undefined, Agent>();
  const agent = (credentials?: ClientCredentials) => {
    let found = agents.get(credentials);
    if (!found) {
      found = new Agent({ connect: { ca: tf.serverCa, ...(credentials ? { cert: credentials.cert, key: credentials.key } : {}) }, connections: 8 });
      agents.set(credentials, found);
    }
    return found;
  };
  const bankClient = await oauthClient(server.issuer, bank, tf.serverCa);
  return {
    tf, server, bank, bankClient, dataProvider, agents, agent,
    async close() {
      await Promise.all([...agents.values()].map((a) => a.close().catch(() => {})));
      await bankClient.agent.close().catch(() => {});
      await server.close();
    },
  };
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  contentType: string;
  text: string;
  json: unknown;
}

export interface RawRequest {
  method?: string;
  /** An object, or a flat [name, value, name, value …] list to repeat a header. */
  headers?: Record<string, string> | string[];
  body?: string | Buffer;
}

/** One request with exactly these bytes; never follows redirects. */
export async function send(dispatcher: Agent, url: string, init: RawRequest = {}): Promise<RawAnswer> {
  const res = await request(url, {
    method: (init.method ?? (init.body !== undefined ? 'POST' : 'GET')) as 'GET',
    headers: init.headers,
    body: init.body,
    dispatcher,
  });
  const text = await res.body.text();
  let json: unknown;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  const contentType = String(res.headers['content-type'] ?? '');
  return { status: res.statusCode, headers: res.headers as RawAnswer['headers'], contentType, text, json };
}

/**
 * Error codes a machine endpoint may answer, with the statuses each may come with. RFC 6749 §5.2,
 * RFC 7009, RFC 7662, RFC 9126 and the server's own (README "Errors"): `not_found` from the
 * permission endpoint and the mTLS listener.
 */
export const MACHINE_ERRORS: Record<string, number[]> = {
  invalid_request: [400, 405, 413],
  invalid_client: [401],
  invalid_grant: [400],
  unauthorized_client: [400, 403],
  unsupported_grant_type: [400],
  invalid_scope: [400],
  invalid_target: [400],
  unsupported_response_type: [400],
  unsupported_token_type: [400],
  invalid_redirect_uri: [400],
  // RFC 9101 / OpenID: PAR with a request object or a request_uri, neither of which is supported.
  request_not_supported: [400],
  request_uri_not_supported: [400],
  unsupported_response_mode: [400],
  invalid_request_object: [400],
  // RFC 9449: oidc-provider's DPoP is on by default, so a DPoP header is checked.
  invalid_dpop_proof: [400, 401],
  use_dpop_nonce: [400, 401],
  not_found: [404],
  // A store down (503) or a rate limit (429, src/ops/rate-limit.ts), both with Retry-After.
  temporarily_unavailable: [429, 503],
};

function describe(what: string, answer: RawAnswer): string {
  return `${what}: ${answer.status} ${answer.contentType} ${answer.text.slice(0, 300)}`;
}

/** Machine endpoints: below 500, and every error is `{error, error_description?}` JSON with a known code and its status. */
export function expectMachineAnswer(answer: RawAnswer, what: string, method = 'POST'): void {
  expect(answer.status, describe(what, answer)).toBeLessThan(500);
  if (method === 'HEAD') {
    // No body to look at: the headers an error would carry.
    expect(answer.contentType, describe(what, answer)).toMatch(/^application\/json/);
    if (answer.status >= 400) expect(String(answer.headers['cache-control'] ?? ''), describe(what, answer)).toMatch(/no-store/);
    return;
  }
  if (answer.status < 400) {
    expect(answer.contentType, describe(what, answer)).toMatch(/^application\/json/);
    expect(answer.json, describe(what, answer)).toBeTypeOf('object');
    return;
  }
  expect(answer.contentType, describe(what, answer)).toMatch(/^application\/json/);
  const body = answer.json as Record<string, unknown>;
  expect(body, describe(what, answer)).toBeTypeOf('object');
  // RFC 6749 §5.2 members only; the library adds the offending `scope` to invalid_scope (an
  // extension member clients ignore; documented in openapi/perseus-machine-endpoints.yaml).
  const members = body.error === 'invalid_scope' ? ['error', 'error_description', 'scope'] : ['error', 'error_description'];
  expect(Object.keys(body).every((k) => members.includes(k)), describe(what, answer)).toBe(true);
  expect(typeof body.error, describe(what, answer)).toBe('string');
  if ('error_description' in body) expect(typeof body.error_description, describe(what, answer)).toBe('string');
  const statuses = MACHINE_ERRORS[body.error as string];
  expect(statuses, describe(`${what} (unexpected error code)`, answer)).toBeDefined();
  expect(statuses, describe(`${what} (status does not fit the error code)`, answer)).toContain(answer.status);
  // RFC 6749 §5.2 / RFC 6750 §3: errors are never cached; 401 names the authentication scheme.
  expect(String(answer.headers['cache-control'] ?? ''), describe(what, answer)).toMatch(/no-store/);
  if (answer.status === 401) expect(answer.headers['www-authenticate'], describe(what, answer)).toBeDefined();
}

/** Pages: below 500, and every error is an HTML page. */
export function expectPageAnswer(answer: RawAnswer, what: string, method = 'POST'): void {
  expect(answer.status, describe(what, answer)).toBeLessThan(500);
  if (answer.status >= 400) {
    expect(answer.contentType, describe(what, answer)).toMatch(/^text\/html/);
    if (method !== 'HEAD') expect(answer.text, describe(what, answer)).toMatch(/<html/i);
  }
}

/** The server still answers after whatever was sent to it. */
export async function expectAlive(world: World): Promise<void> {
  const pub = await send(world.agent(), `${world.server.issuer}/health/live`);
  expect(pub.status).toBe(200);
  const mtls = await send(world.agent(world.bank), `${world.server.mtlsOrigin}/health/live`);
  expect(mtls.status).toBe(200);
}

/** A browser's cookies, to send raw forms as a browser that holds a session would. */
export class CookieJar {
  readonly #cookies = new Map<string, string>();
  header(): string {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  store(setCookie: string | string[] | undefined): void {
    for (const header of [setCookie ?? []].flat()) {
      const [pair] = header.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/expires=Thu, 01 Jan 1970/i.test(header) || /max-age=0/i.test(header) || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }
  get size(): number {
    return this.#cookies.size;
  }
}

/** GET or POST with the jar's cookies, following redirects on the same origin (at most 10). */
export async function browse(world: World, jar: CookieJar, url: string, init: RawRequest = {}): Promise<RawAnswer & { url: string; leftTo?: URL }> {
  let target = new URL(url, world.server.issuer);
  let res = await send(world.agent(), target.href, { ...init, headers: withCookies(init.headers, jar) });
  jar.store(res.headers['set-cookie']);
  for (let hops = 0; res.status >= 300 && res.status < 400 && res.headers.location; hops++) {
    if (hops > 10) throw new Error('too many redirects');
    const next = new URL(String(res.headers.location), target);
    if (next.origin !== world.server.issuer) return { ...res, url: target.href, leftTo: next };
    target = next;
    res = await send(world.agent(), target.href, { headers: withCookies(undefined, jar) });
    jar.store(res.headers['set-cookie']);
  }
  return { ...res, url: target.href };
}

export function withCookies(headers: RawRequest['headers'], jar: CookieJar): RawRequest['headers'] {
  const cookie = jar.header();
  if (!cookie) return headers;
  if (Array.isArray(headers)) return [...headers, 'cookie', cookie];
  return { ...(headers ?? {}), cookie };
}

/** An authorization interaction waiting for the SME's sign-in: its form's action and CSRF token. */
export interface SignInStep { jar: CookieJar; action: string; csrf: string }

export async function openInteraction(world: World): Promise<SignInStep> {
  const pushed = await pushAuthorization(world.bankClient);
  const jar = new CookieJar();
  const page = await browse(world, jar, pushed.authorizationUrl.href);
  expect(page.status, page.text.slice(0, 300)).toBe(200);
  return { jar, action: formAction(page.text, '/sign-in'), csrf: hiddenField(page.text, 'csrf') };
}

/** An interaction whose SME has signed in and now sees the consent form. */
export interface DecisionStep { jar: CookieJar; action: string; csrf: string; meters: string[] }

export async function signedInInteraction(world: World): Promise<DecisionStep> {
  const step = await openInteraction(world);
  const consent = await browse(world, step.jar, step.action, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: step.csrf, email: SME.email, password: SME.password }).toString(),
  });
  expect(consent.status, consent.text.slice(0, 300)).toBe(200);
  return { jar: step.jar, action: formAction(consent.text, '/decision'), csrf: hiddenField(consent.text, 'csrf'), meters: meterChoices(consent.text) };
}

/** The dashboard sign-in form: a pre-session cookie and its CSRF token. */
export async function dashboardSignInStep(world: World): Promise<{ jar: CookieJar; csrf: string }> {
  const jar = new CookieJar();
  const page = await browse(world, jar, '/dashboard');
  expect(page.status).toBe(200);
  return { jar, csrf: hiddenField(page.text, 'csrf') };
}

/** A dashboard session: its cookies and the CSRF token of its forms. */
export async function dashboardSession(world: World): Promise<{ jar: CookieJar; csrf: string }> {
  const step = await dashboardSignInStep(world);
  const page = await browse(world, step.jar, '/dashboard/sign-in', {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: step.csrf, email: SME.email, password: SME.password }).toString(),
  });
  expect(page.status).toBe(200);
  return { jar: step.jar, csrf: hiddenField(page.text, 'csrf') };
}

/** A full grant through the real pages and the token endpoint: codes, tokens, the permission id. */
export async function grantedTokens(world: World): Promise<{ accessToken: string; refreshToken: string; permissionId: string }> {
  const pushed = await pushAuthorization(world.bankClient);
  const callback = await smeDecides(new HttpBrowser(world.server.issuer, world.tf.serverCa), pushed.authorizationUrl, SME);
  const tokens = await oauth.authorizationCodeGrant(world.bankClient.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
  const list = await world.server.permissions.store.byOrganisation((await world.server.smeAccounts.findOrganisation(SME.organisation))!.id);
  const newest = list.sort((a, b) => b.lastGranted.getTime() - a.lastGranted.getTime())[0];
  return { accessToken: tokens.access_token, refreshToken: String(tokens.refresh_token), permissionId: newest.id };
}

/** A fresh authorization code (not yet redeemed) with what redeeming it needs. */
export async function freshCode(world: World): Promise<{ code: string; codeVerifier: string; redirectUri: string }> {
  const pushed = await pushAuthorization(world.bankClient);
  const callback = await smeDecides(new HttpBrowser(world.server.issuer, world.tf.serverCa), pushed.authorizationUrl, SME);
  return { code: callback.searchParams.get('code')!, codeVerifier: pushed.codeVerifier, redirectUri: BANK_REDIRECT };
}

export { BANK_REDIRECT, LICENSE_EMISSIONS };

/** A fast-check seed: FC_SEED from the environment to replay a failure, else a new one (printed on failure). */
export function newSeed(): number {
  return process.env.FC_SEED ? Number(process.env.FC_SEED) : (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0;
}
