import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { StoreUnavailableError } from '../../src/adapters/types.ts';
import type { CrlSourceStatus } from '../../src/pki/revocation-list-cache.ts';
import { createMetrics } from '../../src/ops/metrics.ts';
import { readinessCheck, startMetricsServer, type MetricsServer, type Readiness } from '../../src/ops/metrics-server.ts';

describe('metrics server (internal port)', () => {
  const metrics = createMetrics();
  let verdict: () => Promise<Readiness> = async () => ({ ok: true, details: { store: 'ok' } });
  let server: MetricsServer;
  let base: string;

  beforeAll(async () => {
    server = await startMetricsServer({ port: 0, registry: metrics.registry, ready: () => verdict(), readyTimeoutMs: 300 });
    base = `http://127.0.0.1:${server.port}`;
  });
  afterAll(() => server.close());

  it('serves Prometheus text on /metrics, with the default process metrics', async () => {
    metrics.flowStarted();
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('perseus_oauth_flows_started_total 1');
    expect(text).toContain('process_cpu_user_seconds_total');
  });

  it('answers /health/live while the process runs', async () => {
    const res = await fetch(`${base}/health/live`);
    expect([res.status, await res.json()]).toEqual([200, { status: 'live' }]);
  });

  it('answers /health/ready 200 while the check passes, 503 when it fails, throws or hangs, and 200 again once it passes', async () => {
    let res = await fetch(`${base}/health/ready`);
    expect([res.status, await res.json()]).toEqual([200, { status: 'ready', store: 'ok' }]);

    verdict = async () => ({ ok: false, details: { store: 'unreachable' } });
    res = await fetch(`${base}/health/ready`);
    expect([res.status, await res.json()]).toEqual([503, { status: 'not ready', store: 'unreachable' }]);

    verdict = async () => { throw new Error('mongo is down'); };
    res = await fetch(`${base}/health/ready`);
    expect([res.status, await res.json()]).toEqual([503, { status: 'not ready', error: 'mongo is down' }]);

    verdict = () => new Promise(() => {});
    res = await fetch(`${base}/health/ready`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toContain('did not answer within 300 ms');

    verdict = async () => ({ ok: true, details: {} });
    res = await fetch(`${base}/health/ready`);
    expect(res.status).toBe(200);
  });

  it('answers 404 elsewhere and 405 to anything but GET and HEAD', async () => {
    expect((await fetch(`${base}/token`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${base}/health/live`, { method: 'HEAD' })).status).toBe(200);
  });
});

describe('readinessCheck', () => {
  it('is ready when the store answers and every CRL source is current (ok or stale)', async () => {
    let storeUp = true;
    let states: CrlSourceStatus['state'][] = ['ok', 'stale'];
    const check = readinessCheck({
      store: { ping: async () => { if (!storeUp) throw new StoreUnavailableError('redis'); } },
      revocation: { status: () => states.map((state, i) => ({ source: `crl-${i}`, state, issuers: [] })) },
    });
    expect((await check()).ok).toBe(true);
    states = ['ok', 'expired'];
    expect(await check()).toMatchObject({ ok: false, details: { crl: [{ state: 'ok' }, { state: 'expired' }] } });
    storeUp = false;
    expect(await check()).toEqual({ ok: false, details: { store: 'unreachable' } });
  });
});
