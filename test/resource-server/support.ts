// Helpers for the data API tests: permissions granted through the real authorization server's
// pages, data requests with a member certificate, and guarded APIs on real listeners.
import * as oauth from 'openid-client';
import Koa from 'koa';
import { Agent, fetch } from 'undici';

import { ClientCertificateTrust } from '../../src/pki/client-certificate.ts';
import { permissionGuard, type PermissionGuard, type PermissionGuardOptions } from '../../src/resource-server/guard.ts';
import { listenResourceServer, type RunningResourceServer } from '../../src/resource-server/listener.ts';
import { pushAuthorization } from '../support/flows.ts';
import { formAction, hiddenField, HttpBrowser } from '../support/http-browser.ts';
import type { OAuthClient } from '../support/oauth-client.ts';
import type { TestServer } from '../support/server.ts';
import type { ClientCredentials, TestTrustFramework } from '../support/trust-framework.ts';

export const LICENSE_CONSUMPTION = 'https://registry.core.trust.ib1.org/scheme/perseus/license/energy-consumption-edp-cap/2026-03-12';
export const LICENSE_EMISSIONS = 'https://registry.core.trust.ib1.org/scheme/perseus/license/emissions-cap-fsp/2026-03-12';
export const CAP_REDIRECT = 'https://client.example/perseus/callback';

export interface Sme {
  email: string;
  password: string;
}

/**
 * A permission through the real pages: PAR for `license`, the SME signs in and allows, choosing
 * only `meterIds` (the store's meter ids; default: every meter), then the token exchange.
 */
export async function grant(server: TestServer, tf: TestTrustFramework, client: OAuthClient, sme: Sme, license: string, meterIds?: string[]) {
  const pushed = await pushAuthorization(client, { scope: license, redirect_uri: CAP_REDIRECT });
  const browser = new HttpBrowser(server.issuer, tf.serverCa);
  const signIn = await browser.navigate(pushed.authorizationUrl.href);
  const consent = await browser.navigate(formAction(signIn.html, '/sign-in'), {
    form: { csrf: hiddenField(signIn.html, 'csrf'), email: sme.email, password: sme.password },
  });
  if (!consent.html.includes('Allow')) throw new Error(`no consent page (status ${consent.status})`);
  const meters = meterIds ?? [...consent.html.matchAll(/<input type="checkbox" name="meter" value="([^"]+)"/g)].map((m) => m[1]);
  const done = await browser.navigate(formAction(consent.html, '/decision'), { form: { csrf: hiddenField(consent.html, 'csrf'), decision: 'allow', meter: meters } });
  if (!done.leftTo) throw new Error(`the browser was not sent back to the client (status ${done.status})`);
  return oauth.authorizationCodeGrant(client.config, done.leftTo, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
}

const agents = new Map<string, Agent>();
function agentFor(credentials: ClientCredentials | undefined, serverCa: string): Agent {
  const key = credentials ? credentials.cert : 'anonymous';
  let agent = agents.get(key);
  if (!agent) {
    agent = new Agent({ connect: { ca: serverCa, ...(credentials ? { cert: credentials.cert, key: credentials.key } : {}) } });
    agents.set(key, agent);
  }
  return agent;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
}

/** One data request with (or without) a member certificate and a bearer token. */
export async function call(url: string, options: {
  credentials?: ClientCredentials; serverCa: string; token?: string; method?: string;
  headers?: Record<string, string>; form?: Record<string, string>;
}): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(options.form).toString();
  }
  const res = await fetch(url, { method: options.method ?? 'GET', headers, body, dispatcher: agentFor(options.credentials, options.serverCa) });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers as unknown as Headers, json };
}

/** Guard options for an API whose own member certificate is `api`, introspecting at the test server. */
export function guardOptions(tf: TestTrustFramework, server: TestServer, api: ClientCredentials, licenses: string[], extra: Partial<PermissionGuardOptions> = {}): PermissionGuardOptions {
  return {
    trust: new ClientCertificateTrust({ rootsPem: tf.clientCa }),
    introspection: { url: `${server.mtlsOrigin}/introspect`, cert: api.cert, key: api.key, ca: tf.serverCa },
    licenses,
    ...extra,
  };
}

/** An API that answers the guard's permission: `ctx.state.permission` as JSON. */
export async function startEcho(tf: TestTrustFramework, guard: PermissionGuard): Promise<RunningResourceServer> {
  const app = new Koa();
  app.use(guard);
  app.use((ctx) => {
    ctx.body = { permission: ctx.state.permission, form: ctx.state.formBody ? Object.fromEntries(ctx.state.formBody) : undefined };
  });
  return listenResourceServer(app, { ...tf.serverTls, clientCa: tf.clientCa });
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000, every = 50): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}
