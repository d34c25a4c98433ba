/**
 * The operations modules wired into the real server (src/server.ts): metrics that move with a
 * real flow, the internal metrics/health listener, request ids and secret-free request logs,
 * per-client rate limits on the mTLS listener, and a graceful close.
 *
 * Skipped until src/server.ts uses src/ops (see the wiring notes); then it runs on both stores.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import * as oauth from 'openid-client';
import { fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { PerseusMetrics } from '../../src/ops/metrics.ts';
import type { Shutdown } from '../../src/ops/shutdown.ts';
import { pushAuthorization, smeDecides } from '../support/flows.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { oauthClient, postForm, type OAuthClient } from '../support/oauth-client.ts';
import { SKIP_SERVICES } from '../support/services.ts';
import { startTestServerOn, storageUnderTest, type StorageUnderTest, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const SME = { email: 'owner@bakery.example', password: 'correct horse battery', organisation: 'Riverside Bakery Ltd' };

type Wired = TestServer & { metrics: PerseusMetrics; metricsPort: number | undefined; shutdown: Shutdown };

describe.each(['sqlite', 'mongo'] as const)('operations wired into the server (STORAGE=%s)', (storageKind) => {
  const skip = storageKind === 'mongo' && SKIP_SERVICES;
  let storage: StorageUnderTest;
  let tf: TestTrustFramework;
  let server: Wired;
  let bankCredentials: ClientCredentials;
  let bank: OAuthClient;
  const lines: Array<Record<string, unknown>> = [];
  const secrets: string[] = [SME.password];

  beforeAll(async () => {
    if (skip) return;
    tf = await TestTrustFramework.create();
    bankCredentials = await tf.member('https://directory.example/a/green-loans', ['financial-service-provider'], 'Example Bank plc', 'Green Loans');
    storage = await storageUnderTest(storageKind);
    server = await startTestServerOn(storage, tf, { METRICS_PORT: '0', RATE_LIMIT_CLIENT: '4/60' }, { log: (line) => void lines.push(line) }) as Wired;
    await server.smeAccounts.addSme({ ...SME, meters: ['1012345678901:SW1A'] });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
  });
  afterAll(async () => {
    await server?.close();
    await storage?.stop();
  });

  it.skipIf(skip)('counts a whole flow in the metrics served on the internal port', async () => {
    const pushed = await pushAuthorization(bank); // PAR 1
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    const code = callback.searchParams.get('code')!;
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state }); // token 1
    secrets.push(code, tokens.access_token, tokens.refresh_token!, pushed.codeVerifier);

    expect(server.metricsPort).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${server.metricsPort}`;
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toContain('perseus_oauth_flows_started_total 1');
    expect(text).toContain('perseus_oauth_flows_completed_total 1');
    expect(text).toContain('perseus_permissions_granted_total 1');
    expect(text).toMatch(/perseus_sign_ins_total\{outcome="ok"\} 1/);
    expect(text).toMatch(/perseus_http_requests_total\{listener="public",method="GET",route="\/interaction\/:uid",status_class="2xx",oauth_error=""\} [1-9]/);
    expect(text).toMatch(/perseus_http_requests_total\{listener="mtls",method="POST",route="\/par",status_class="2xx",oauth_error=""\} 1/);
    expect(text).toMatch(/perseus_store_operation_duration_seconds_count\{store="[^"]+",model="AuthorizationCode",operation="consume",outcome="ok"\} 1/);
    expect(text).toMatch(/perseus_client_certificate_verdicts_total\{verdict="ok"\} [1-9]/);
    expect(text).toContain('perseus_outbox_pending 0');
    for (const secret of secrets) expect(text).not.toContain(secret);

    const ready = await fetch(`${base}/health/ready`);
    expect(ready.status).toBe(200);
  });

  it.skipIf(skip)('logs one secret-free line per request, each with the request id it answered', async () => {
    const res = await undiciFetch(`${server.mtlsOrigin}/par`, { method: 'POST', dispatcher: bank.agent, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'client_id=x' }); // PAR 2
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const requestLines = lines.filter((line) => line.msg === 'request');
    expect(requestLines.find((line) => line.reqId === id)).toMatchObject({ listener: 'mtls', route: '/par', client: bankCredentials.applicationUrl });
    for (const line of requestLines) expect(line.reqId).toEqual(expect.any(String));
    const all = JSON.stringify(lines);
    for (const secret of secrets) expect(all).not.toContain(secret);
    expect(all).not.toMatch(/_session|_interaction|cookie/i);
  });

  it.skipIf(skip)('answers PAR and token 429 temporarily_unavailable with Retry-After beyond RATE_LIMIT_CLIENT', async () => {
    const form = { client_id: bankCredentials.applicationUrl, response_type: 'code', redirect_uri: 'https://bank.example/cb', scope: 'x' };
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof postForm>> | undefined;
    for (let i = 0; i < 3; i++) {
      last = await postForm(`${server.mtlsOrigin}/par`, form, bankCredentials, tf.serverCa);
      statuses.push(last.status);
    }
    // PAR 1, token 1 and PAR 2 came before: the 4th request is the last allowed one.
    expect(statuses.slice(1)).toEqual([429, 429]);
    expect(last!.json).toMatchObject({ error: 'temporarily_unavailable' });
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThan(0);
    const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    expect(text).toMatch(/perseus_rate_limited_total\{rule="client"\} 2/);
  });

  it.skipIf(skip)('closes gracefully: not ready, then listeners and stores closed', async () => {
    const result = await server.shutdown.shutdown('test');
    expect(result).toEqual({ code: 0, cutRequests: 0, failedClosers: [] });
    await expect(fetch(`http://127.0.0.1:${server.metricsPort}/health/live`)).rejects.toThrow();
  });
});
