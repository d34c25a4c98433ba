import Koa from 'koa';
import request from 'supertest';
import { describe, expect, it, vi } from 'vitest';

import { field, readForm } from '../../src/http/form-body.ts';
import { createLogger, currentRequestId, loggerFromSink, logSink, requestLogger, type Logger } from '../../src/ops/logger.ts';

function capture(): { logger: Logger; lines: () => Array<Record<string, unknown>>; text: () => string } {
  const out: string[] = [];
  const logger = createLogger({ destination: { write: (line: string) => void out.push(line) } });
  return { logger, lines: () => out.map((line) => JSON.parse(line)), text: () => out.join('') };
}

const SECRETS = {
  code: 'SECRET-AUTHZ-CODE-1', accessToken: 'SECRET-ACCESS-TOKEN-2', refreshToken: 'SECRET-REFRESH-3', password: 'SECRET-PASSWORD-4',
  cookie: 'SECRET-COOKIE-5', bearer: 'SECRET-BEARER-6', uid: 'SECRET-UID-7', verifier: 'SECRET-VERIFIER-8', csrf: 'SECRET-CSRF-9',
};

function app(logger: Logger, options: { trusted?: boolean; listener?: 'public' | 'mtls'; verdict?: unknown } = {}) {
  const koa = new Koa();
  koa.silent = true;
  koa.use(requestLogger({ logger, listener: options.listener ?? 'public', isTrustedProxy: () => options.trusted ?? false }));
  const legacy = logSink(logger);
  koa.use(async (ctx, next) => {
    if (options.verdict) ctx.state.clientCertificate = options.verdict;
    await next();
  });
  koa.use(async (ctx) => {
    if (ctx.method === 'POST') {
      const form = await readForm(ctx);
      // Careless code: whole headers, query and form into the log. Redaction must hold.
      ctx.state.log.info({ headers: ctx.headers, query: ctx.query, body: Object.fromEntries(form), password: field(form, 'password') }, 'handler saw the request');
      // Legacy LogSink callers, with secrets under secret-named keys and a raw path.
      legacy({ msg: 'legacy line', path: ctx.path, token: SECRETS.accessToken, nested: { refresh_token: SECRETS.refreshToken, cookie: ctx.get('cookie') }, code: 'permission_text_mismatch' });
      ctx.status = 401;
      ctx.body = { error: 'invalid_grant', error_description: 'no' };
      return;
    }
    ctx.body = { requestId: currentRequestId() };
  });
  return koa.callback();
}

describe('request logs', () => {
  it('never contain a token, code, password, cookie, Authorization header, query string or body', async () => {
    const { logger, text, lines } = capture();
    const res = await request(app(logger))
      .post(`/interaction/${SECRETS.uid}/sign-in?code=${SECRETS.code}&access_token=${SECRETS.accessToken}`)
      .set('Authorization', `Bearer ${SECRETS.bearer}`)
      .set('Cookie', `_session=${SECRETS.cookie}; other=${SECRETS.cookie}`)
      .type('form')
      .send({ email: 'owner@bakery.example', password: SECRETS.password, csrf: SECRETS.csrf, refresh_token: SECRETS.refreshToken, code_verifier: SECRETS.verifier });
    expect(res.status).toBe(401);

    const output = text();
    for (const secret of Object.values(SECRETS)) expect(output).not.toContain(secret);
    expect(output).not.toContain('owner@bakery.example');

    const all = lines();
    expect(all.map((line) => line.msg)).toEqual(['handler saw the request', 'legacy line', 'request']);
    const requestLine = all[2];
    expect(requestLine).toMatchObject({ level: 'info', listener: 'public', method: 'POST', route: '/interaction/:uid/sign-in', status: 401, oauthError: 'invalid_grant' });
    expect(Object.keys(requestLine).sort()).toEqual(['level', 'listener', 'method', 'ms', 'msg', 'oauthError', 'reqId', 'route', 'status', 'time']);
    // The legacy line keeps its useful fields, its path as a route.
    expect(all[1]).toMatchObject({ route: '/interaction/:uid/sign-in', code: 'permission_text_mismatch', token: '[redacted]' });
  });

  it('carry the request id on every line, and answer it in X-Request-Id', async () => {
    const { logger, lines } = capture();
    const res = await request(app(logger)).post('/dashboard/sign-in').type('form').send({ email: 'a@b.example', password: 'pw' });
    const id = res.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const all = lines();
    expect(all).toHaveLength(3);
    for (const line of all) expect(line.reqId).toBe(id);

    const second = await request(app(logger)).get('/dashboard');
    expect(second.headers['x-request-id']).not.toBe(id);
    expect(second.body.requestId).toBe(second.headers['x-request-id']);
  });

  it('take X-Request-Id from a trusted proxy only, and only when it looks like an id', async () => {
    const { logger } = capture();
    const trusted = await request(app(logger, { trusted: true })).get('/dashboard').set('X-Request-Id', 'alb-1234.abcd');
    expect(trusted.headers['x-request-id']).toBe('alb-1234.abcd');
    const untrusted = await request(app(logger, { trusted: false })).get('/dashboard').set('X-Request-Id', 'alb-1234.abcd');
    expect(untrusted.headers['x-request-id']).not.toBe('alb-1234.abcd');
    const injected = await request(app(logger, { trusted: true })).get('/dashboard').set('X-Request-Id', 'x"} {"admin":true');
    expect(injected.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('name the client application, member and roles of machine requests, or the certificate refusal', async () => {
    const { logger, lines } = capture();
    const verdict = { ok: true, applicationUrl: 'https://directory.example/a/bank', member: 'https://directory.example/m/bank', roles: ['https://registry.example/roles/fsp'], thumbprintS256: 'x', leaf: {} };
    await request(app(logger, { listener: 'mtls', verdict })).get('/introspect');
    await request(app(logger, { listener: 'mtls', verdict: { ok: false, code: 'expired', message: 'm' } })).get('/introspect');
    const [accepted, refused] = lines();
    expect(accepted).toMatchObject({ listener: 'mtls', route: '/introspect', client: verdict.applicationUrl, member: verdict.member, roles: verdict.roles });
    expect(accepted).not.toHaveProperty('leaf');
    expect(accepted).not.toHaveProperty('thumbprintS256');
    expect(refused).toMatchObject({ certificate: 'expired' });
    expect(refused).not.toHaveProperty('client');
  });
});

describe('loggerFromSink', () => {
  it('hands each line to a LogSink as an object, redacted', () => {
    const got: Array<Record<string, unknown>> = [];
    const logger = loggerFromSink((line) => void got.push(line));
    logger.info({ password: 'pw', route: '/par' }, 'hello');
    expect(got).toEqual([expect.objectContaining({ level: 'info', msg: 'hello', route: '/par', password: '[redacted]' })]);
  });
});

describe('log line times', () => {
  it('are the ISO time of the millisecond each line is written, formatted once per millisecond', () => {
    let clock = Date.UTC(2026, 10, 28, 4, 30, 0, 123);
    const now = vi.spyOn(Date, 'now').mockImplementation(() => clock);
    const toIso = vi.spyOn(Date.prototype, 'toISOString');
    try {
      const { logger, lines } = capture();
      logger.info('one');
      logger.info('two');
      clock += 1;
      logger.info('three');
      expect(lines().map((line) => line.time)).toEqual(['2026-11-28T04:30:00.123Z', '2026-11-28T04:30:00.123Z', '2026-11-28T04:30:00.124Z']);
      expect(toIso).toHaveBeenCalledTimes(2);
    } finally {
      now.mockRestore();
      toIso.mockRestore();
    }
  });
});
