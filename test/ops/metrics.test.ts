import { EventEmitter } from 'node:events';

import Koa from 'koa';
import request from 'supertest';
import { describe, expect, it } from 'vitest';

import { StoreUnavailableError, type OidcAdapter, type OidcStore } from '../../src/adapters/types.ts';
import type { AuditEvent, AuditLog } from '../../src/consent/audit-log.ts';
import type { CrlSourceStatus } from '../../src/pki/revocation-list-cache.ts';
import { createMetrics, instrumentOidcStore, observeAuditLog, observeProvider, type PerseusMetrics } from '../../src/ops/metrics.ts';

/** The value of one series of a metric, 0 when the series does not exist. */
async function value(metrics: PerseusMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const data = await metric.get();
  const match = data.values.find((v) => {
    const metricName = (v as { metricName?: string }).metricName;
    if (metricName && metricName !== name && !metricName.endsWith('_count')) return false;
    return Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want);
  });
  return match?.value ?? 0;
}

function app(metrics: PerseusMetrics, listener: 'public' | 'mtls', verdict?: unknown) {
  const koa = new Koa();
  koa.silent = true;
  koa.use(metrics.httpMetrics(listener));
  koa.use(async (ctx, next) => {
    if (verdict) ctx.state.clientCertificate = verdict;
    await next();
  });
  koa.use(async (ctx) => {
    if (ctx.path.startsWith('/interaction/')) ctx.body = 'page';
    else if (ctx.path === '/token') {
      ctx.status = 400;
      ctx.body = { error: 'invalid_grant', error_description: 'grant request is invalid' };
    } else if (ctx.path === '/authorize') {
      ctx.redirect('https://bank.example/cb?error=access_denied&state=xyz&iss=https%3A%2F%2Fas.example');
    } else if (ctx.path === '/par') {
      ctx.status = 201;
      ctx.body = { request_uri: 'urn:ietf:params:oauth:request_uri:abc', expires_in: 60 };
    } else if (ctx.path === '/boom') {
      throw new Error('boom');
    }
  });
  return koa.callback();
}

describe('HTTP metrics', () => {
  it('count and time requests by listener, normalised route and outcome, never with ids or query strings', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const server = app(metrics, 'public');
    await request(server).get('/interaction/SECRET-UID-1').expect(200);
    await request(server).get('/interaction/SECRET-UID-2?code=SECRET-CODE').expect(200);
    await request(server).post('/token').expect(400);
    await request(server).get('/authorize').expect(302);
    await request(server).get('/boom').expect(500);

    expect(await value(metrics, 'perseus_http_requests_total', { listener: 'public', route: '/interaction/:uid', status_class: '2xx', oauth_error: '' })).toBe(2);
    expect(await value(metrics, 'perseus_http_requests_total', { route: '/token', status_class: '4xx', oauth_error: 'invalid_grant' })).toBe(1);
    expect(await value(metrics, 'perseus_http_requests_total', { route: '/authorize', status_class: '3xx', oauth_error: 'access_denied' })).toBe(1);
    expect(await value(metrics, 'perseus_http_requests_total', { route: 'other', status_class: '5xx' })).toBe(1);
    expect(await value(metrics, 'perseus_oauth_errors_total', { code: 'invalid_grant', route: '/token' })).toBe(1);
    expect(await value(metrics, 'perseus_oauth_errors_total', { code: 'access_denied' })).toBe(1);
    expect(await value(metrics, 'perseus_http_request_duration_seconds', { route: '/interaction/:uid' })).toBe(2); // _count

    const text = await metrics.metrics();
    expect(text).not.toMatch(/SECRET|xyz|boom/);
  });

  it('count certificate verdicts on the mTLS listener', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    await request(app(metrics, 'mtls', { ok: false, code: 'expired', message: 'x' })).post('/par').expect(201);
    await request(app(metrics, 'mtls', { ok: true, applicationUrl: 'https://directory.example/app', roles: [] })).post('/par').expect(201);
    expect(await value(metrics, 'perseus_client_certificate_verdicts_total', { verdict: 'expired' })).toBe(1);
    expect(await value(metrics, 'perseus_client_certificate_verdicts_total', { verdict: 'ok' })).toBe(1);
    expect(await metrics.metrics()).not.toContain('directory.example');
  });
});

describe('domain metrics', () => {
  it('count flows started (PAR) and completed (authorization_code token) from provider events', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const provider = new EventEmitter();
    observeProvider(provider, metrics);
    provider.emit('pushed_authorization_request.success', {}, {});
    provider.emit('pushed_authorization_request.success', {}, {});
    provider.emit('grant.success', { oidc: { params: { grant_type: 'authorization_code' } } });
    provider.emit('grant.success', { oidc: { params: { grant_type: 'refresh_token' } } });
    expect(await value(metrics, 'perseus_oauth_flows_started_total')).toBe(2);
    expect(await value(metrics, 'perseus_oauth_flows_completed_total')).toBe(1);
  });

  it('count permissions granted, renewed, expired and withdrawn by whom from appended audit events', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const appended: AuditEvent[] = [];
    let fail = false;
    const audit = {
      async append(event: AuditEvent) {
        if (fail) throw new Error('store down');
        appended.push(event);
      },
      list: async () => [],
      verify: async () => ({ ok: true as const, events: 0 }),
    } satisfies AuditLog;
    observeAuditLog(audit, metrics);
    const at = new Date();
    await audit.append({ kind: 'decision', at, actor: 'u', detail: { decision: 'allow', outcome: 'granted' } });
    await audit.append({ kind: 'decision', at, actor: 'u', detail: { decision: 'allow', outcome: 'renewed' } });
    await audit.append({ kind: 'decision', at, actor: 'u', detail: { decision: 'deny' } });
    await audit.append({ kind: 'withdrawal', at, actor: 'u', detail: { by: 'sme' } });
    await audit.append({ kind: 'withdrawal', at, actor: 'c', detail: { by: 'client' } });
    await audit.append({ kind: 'expiry_seen', at, actor: 'system' });
    await audit.append({ kind: 'sign_in_failed', at, actor: 'unknown' });
    fail = true;
    await expect(audit.append({ kind: 'withdrawal', at, actor: 'operator', detail: { by: 'operator' } })).rejects.toThrow('store down');

    expect(appended).toHaveLength(7);
    expect(await value(metrics, 'perseus_permissions_granted_total')).toBe(1);
    expect(await value(metrics, 'perseus_permissions_renewed_total')).toBe(1);
    expect(await value(metrics, 'perseus_permissions_expired_total')).toBe(1);
    expect(await value(metrics, 'perseus_permissions_withdrawn_total', { by: 'sme' })).toBe(1);
    expect(await value(metrics, 'perseus_permissions_withdrawn_total', { by: 'client' })).toBe(1);
    expect(await value(metrics, 'perseus_permissions_withdrawn_total', { by: 'operator' })).toBe(0);
    expect(await value(metrics, 'perseus_sign_ins_total', { outcome: 'failed' })).toBe(1);
  });

  it('read the outbox depth and the CRL states at scrape time, and count delivery failures', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    let pending: number | Error = 3;
    metrics.watchOutbox({ pending: async () => { if (pending instanceof Error) throw pending; return pending; } });
    let state: CrlSourceStatus['state'] = 'ok';
    metrics.watchRevocation({ status: () => [{ source: 'https://ca.example/root.crl', state, issuers: [], nextUpdate: '2030-01-01T00:00:00.000Z' }] });

    expect(await value(metrics, 'perseus_outbox_pending')).toBe(3);
    pending = 7;
    expect(await value(metrics, 'perseus_outbox_pending')).toBe(7);
    pending = new Error('down');
    expect(await value(metrics, 'perseus_outbox_pending')).toBeNaN();

    expect(await value(metrics, 'perseus_crl_source_state', { source: 'https://ca.example/root.crl', state: 'ok' })).toBe(1);
    state = 'expired';
    expect(await value(metrics, 'perseus_crl_source_state', { state: 'ok' })).toBe(0);
    expect(await value(metrics, 'perseus_crl_source_state', { state: 'expired' })).toBe(1);
    expect(await value(metrics, 'perseus_crl_next_update_timestamp_seconds')).toBe(Date.parse('2030-01-01T00:00:00Z') / 1000);

    metrics.outboxDelivery('retry');
    metrics.outboxDelivery('retry');
    metrics.outboxDelivery('given_up');
    metrics.outboxDelivery('delivered');
    expect(await value(metrics, 'perseus_outbox_delivery_failures_total', { outcome: 'retry' })).toBe(2);
    expect(await value(metrics, 'perseus_outbox_delivery_failures_total', { outcome: 'given_up' })).toBe(1);
    expect(await value(metrics, 'perseus_outbox_delivered_total')).toBe(1);
  });

  it('time every store operation by model and operation, and still behave as the store', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const entries = new Map<string, Record<string, unknown>>();
    let down = false;
    const adapter: OidcAdapter = {
      upsert: async (id, payload) => { entries.set(id, payload); },
      find: async (id) => { if (down) throw new StoreUnavailableError('fake'); return entries.get(id); },
      findByUid: async () => undefined,
      findByUserCode: async () => undefined,
      consume: async () => { throw new Error('InvalidGrant'); },
      destroy: async (id) => { entries.delete(id); },
      revokeByGrantId: async () => {},
    };
    const inner: OidcStore = { name: 'fake', adapterFor: () => adapter, ping: async () => {}, close: async () => {}, purgeExpired: async () => 0 };
    const store = instrumentOidcStore(inner, metrics);
    expect(store.name).toBe('fake');
    const sessions = store.adapterFor('Session');
    expect(store.adapterFor('Session')).toBe(sessions);
    await sessions.upsert('s1', { jti: 's1' }, 60);
    expect(await sessions.find('s1')).toEqual({ jti: 's1' });
    await expect(store.adapterFor('AuthorizationCode').consume('c1')).rejects.toThrow('InvalidGrant');
    down = true;
    await expect(sessions.find('s1')).rejects.toBeInstanceOf(StoreUnavailableError);
    await store.ping();

    const count = (labels: Record<string, string>) => value(metrics, 'perseus_store_operation_duration_seconds', labels);
    expect(await count({ store: 'fake', model: 'Session', operation: 'upsert', outcome: 'ok' })).toBe(1);
    expect(await count({ model: 'Session', operation: 'find', outcome: 'ok' })).toBe(1);
    expect(await count({ model: 'Session', operation: 'find', outcome: 'unavailable' })).toBe(1);
    expect(await count({ model: 'AuthorizationCode', operation: 'consume', outcome: 'error' })).toBe(1);
    expect(await count({ operation: 'ping', outcome: 'ok' })).toBe(1);
  });
});
