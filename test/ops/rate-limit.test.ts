import Koa from 'koa';
import { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { redisClientOptions } from '../../src/adapters/redis-oidc-store.ts';
import {
  MemoryRateLimitStore, RateLimiter, RedisRateLimitStore, clientRateLimit, signInLimits, type RateLimitStore,
} from '../../src/ops/rate-limit.ts';
import { SKIP_SERVICES, startRedis, uniqueKeyPrefix, type RunningService } from '../support/services.ts';

const BANK = 'https://directory.example/a/green-loans';
const OTHER_BANK = 'https://directory.example/a/other';

/** The public listener's sign-in routes and the mTLS listener's PAR/token, behind the limits. */
function apps(store: RateLimitStore, limited: string[] = [], options: { ipLimit?: number } = {}) {
  const onLimited = (rule: string) => void limited.push(rule);
  const sign = signInLimits({
    perIp: new RateLimiter(store, { name: 'sign-in-ip', limit: options.ipLimit ?? 3, windowMs: 60_000 }, { onLimited }),
    perAccount: new RateLimiter(store, { name: 'sign-in-account', limit: 2, windowMs: 60_000 }, { onLimited }),
  });
  const pages = new Koa();
  pages.use(sign.middleware);
  pages.use(async (ctx) => {
    // What a sign-in handler does with the parsed form: check the account, then the password.
    const emailHash = ctx.get('x-test-email-hash');
    if (emailHash) {
      const decision = await sign.checkSignInAccount(emailHash);
      if (!decision.allowed) return sign.refuse(ctx, decision);
      if (ctx.get('x-test-password-ok')) await sign.signInSucceeded(emailHash);
    }
    ctx.status = 303;
  });

  const machines = new Koa();
  machines.use(async (ctx, next) => {
    const client = ctx.get('x-test-client');
    if (client) ctx.state.clientCertificate = { ok: true, applicationUrl: client, roles: [] };
    await next();
  });
  machines.use(clientRateLimit(new RateLimiter(store, { name: 'client', limit: 2, windowMs: 30_000 }, { onLimited }), ['/par', '/token']));
  machines.use(async (ctx) => {
    ctx.status = ctx.path === '/par' ? 201 : 200;
    ctx.body = {};
  });
  return { pages: pages.callback(), machines: machines.callback() };
}

function describeLimits(name: string, makeStore: () => RateLimitStore) {
  describe(name, () => {
    it('answers 429 with Retry-After to the sign-in attempt after the per-IP limit, on both sign-in forms', async () => {
      const limited: string[] = [];
      const { pages } = apps(makeStore(), limited);
      await request(pages).post('/interaction/abc/sign-in').expect(303);
      await request(pages).post('/dashboard/sign-in').expect(303);
      await request(pages).post('/interaction/def/sign-in').expect(303);
      const refused = await request(pages).post('/dashboard/sign-in').expect(429);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(59);
      expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect(refused.headers['content-type']).toContain('text/plain');
      expect(refused.text).toContain('Too many sign-in attempts');
      // Other pages are not counted.
      await request(pages).get('/dashboard').expect(303);
      expect(limited).toEqual(['sign-in-ip']);
    });

    it('limits attempts per account through checkSignInAccount, and a good sign-in starts the window again', async () => {
      const limited: string[] = [];
      const { pages } = apps(makeStore(), limited, { ipLimit: 100 });
      const attempt = (emailHash: string, passwordOk = false) =>
        request(pages).post('/dashboard/sign-in').set('x-test-email-hash', emailHash).set(passwordOk ? { 'x-test-password-ok': '1' } : {});
      await attempt('hash-a').expect(303);
      await attempt('hash-a', true).expect(303); // a good password: the account's window starts again
      await attempt('hash-a').expect(303);
      await attempt('hash-a').expect(303);
      const refused = await attempt('hash-a').expect(429);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(59);
      await attempt('hash-b').expect(303); // another account
      expect(limited).toEqual(['sign-in-account']);
    });

    it('answers PAR and token 429 temporarily_unavailable with Retry-After per client application', async () => {
      const { machines } = apps(makeStore());
      await request(machines).post('/par').set('x-test-client', BANK).expect(201);
      await request(machines).post('/token').set('x-test-client', BANK).expect(200);
      const refused = await request(machines).post('/token').set('x-test-client', BANK).expect(429);
      expect(refused.body).toEqual({ error: 'temporarily_unavailable', error_description: expect.stringMatching(/^rate limit exceeded/) });
      expect(refused.headers['cache-control']).toBe('no-store');
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(29);
      // Another client, another path, or no accepted certificate: not limited.
      await request(machines).post('/par').set('x-test-client', OTHER_BANK).expect(201);
      await request(machines).post('/introspect').set('x-test-client', BANK).expect(200);
      await request(machines).post('/token').expect(200);
    });
  });
}

describeLimits('rate limits on the in-memory store', () => new MemoryRateLimitStore());

describe('in-memory store', () => {
  it('starts a new window when the old one ended, and bounds its keys', async () => {
    let now = 1_000_000;
    const store = new MemoryRateLimitStore({ now: () => now, maxKeys: 3 });
    const limiter = new RateLimiter(store, { name: 'x', limit: 1, windowMs: 10_000 });
    expect((await limiter.consume('a')).allowed).toBe(true);
    const refused = await limiter.consume('a');
    expect(refused).toMatchObject({ allowed: false, retryAfterSeconds: 10 });
    now += 10_000;
    expect((await limiter.consume('a')).allowed).toBe(true);
    for (const key of ['b', 'c', 'd', 'e']) await limiter.consume(key);
    expect(store.size).toBeLessThanOrEqual(3);
  });

  it('lets requests through when the store fails, and says so', async () => {
    const errors: string[] = [];
    const broken: RateLimitStore = { hit: async () => { throw new Error('down'); }, reset: async () => {}, close: async () => {} };
    const limiter = new RateLimiter(broken, { name: 'x', limit: 1, windowMs: 1000 }, { onStoreError: (_e, rule) => void errors.push(rule) });
    expect((await limiter.consume('a')).allowed).toBe(true);
    expect((await limiter.consume('a')).allowed).toBe(true);
    expect(errors).toEqual(['x', 'x']);
  });
});

describe.skipIf(SKIP_SERVICES)('rate limits on Redis (real redis-server)', () => {
  let redis: RunningService;
  const stores: RedisRateLimitStore[] = [];
  let client: Redis;

  beforeAll(async () => {
    redis = await startRedis();
    client = new Redis(redis.url, redisClientOptions());
    await client.connect();
  });
  afterAll(async () => {
    for (const store of stores) await store.close();
    client?.disconnect();
    await redis?.stop();
  });

  describeLimits('shared by every process', () => {
    const store = new RedisRateLimitStore(client, { keyPrefix: uniqueKeyPrefix('rate') });
    stores.push(store);
    return store;
  });

  it('counts in one window with an expiry, across two clients of the same Redis', async () => {
    const prefix = uniqueKeyPrefix('rate-shared');
    const a = await RedisRateLimitStore.connect(redis.url, { keyPrefix: prefix });
    const b = await RedisRateLimitStore.connect(redis.url, { keyPrefix: prefix });
    stores.push(a, b);
    expect(await a.hit('k', 5000)).toMatchObject({ count: 1 });
    const second = await b.hit('k', 5000);
    expect(second.count).toBe(2);
    expect(second.resetMs).toBeGreaterThan(4000);
    expect(second.resetMs).toBeLessThanOrEqual(5000);
    expect(await client.pttl(`${prefix}k`)).toBeGreaterThan(0);
    await a.reset('k');
    expect(await b.hit('k', 5000)).toMatchObject({ count: 1 });
  });
});
