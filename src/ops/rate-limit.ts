/**
 * Rate limits: fixed windows counted in a store shared by every server process.
 *
 * - Store: in memory for the embedded (SQLite, single process) mode; Redis for STORAGE=mongo,
 *   where several processes must share counts. The Redis count is one Lua script (INCR, then
 *   PEXPIRE when the key is new, and the remaining PTTL), so a window cannot lose its expiry
 *   between two commands and lock a key forever.
 * - Rules: sign-in attempts per client IP (middleware, before the form is read) and per account
 *   (`checkSignInAccount(emailHash)`, called by the sign-in handlers); per client application
 *   (certificate URL) on PAR and token.
 * - A store that fails (Redis down) lets the request through (fail open) and reports it via
 *   `onStoreError`: the limits are a defence against abuse, not a reason to refuse everyone,
 *   and without Redis the sessions are down anyway.
 *
 * Why the account limit is not a middleware: the email is in the form body, and the handlers
 * read the body themselves from the request stream (readForm). A middleware that read it first
 * would consume the stream, and putting it back means replacing ctx.req or changing every
 * handler. The handler, which has the parsed form already, calls `checkSignInAccount` after the
 * CSRF check and before the password check (so wrong passwords are counted and a locked-out
 * account costs no scrypt), and `signInSucceeded` after a good one.
 */
import type { Context, Middleware } from 'koa';
import { Redis } from 'ioredis';

import { hashIdentifier } from '../adapters/oidc-adapter-common.ts';
import { redisClientOptions } from '../adapters/redis-oidc-store.ts';
import { verdictOf } from '../http/client-certificate.ts';
import { oauthError } from '../http/oauth-errors.ts';

export interface WindowCount {
  /** Hits in the current window, this one included. */
  count: number;
  /** Milliseconds until the window ends. */
  resetMs: number;
}

export interface RateLimitStore {
  /** Counts one hit on `key` in its current window of `windowMs` (the window starts at the first hit). */
  hit(key: string, windowMs: number): Promise<WindowCount>;
  /** Forgets the key's window (after a successful sign-in). */
  reset(key: string): Promise<void>;
  close(): Promise<void>;
}

// --- in memory ------------------------------------------------------------------------------

export class MemoryRateLimitStore implements RateLimitStore {
  readonly #windows = new Map<string, { count: number; endsAt: number }>();
  readonly #now: () => number;
  readonly #maxKeys: number;

  /** `maxKeys` bounds memory under a flood of distinct keys: expired windows go first, then the oldest. */
  constructor(options: { now?: () => number; maxKeys?: number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#maxKeys = options.maxKeys ?? 100_000;
  }

  async hit(key: string, windowMs: number): Promise<WindowCount> {
    const now = this.#now();
    let window = this.#windows.get(key);
    if (!window || window.endsAt <= now) {
      this.#windows.delete(key);
      if (this.#windows.size >= this.#maxKeys) this.#evict(now);
      window = { count: 0, endsAt: now + windowMs };
      this.#windows.set(key, window);
    }
    window.count += 1;
    return { count: window.count, resetMs: window.endsAt - now };
  }

  async reset(key: string): Promise<void> {
    this.#windows.delete(key);
  }

  async close(): Promise<void> {
    this.#windows.clear();
  }

  get size(): number {
    return this.#windows.size;
  }

  #evict(now: number): void {
    for (const [key, window] of this.#windows) if (window.endsAt <= now) this.#windows.delete(key);
    // Maps iterate in insertion order: the first keys are the oldest windows.
    for (const key of this.#windows.keys()) {
      if (this.#windows.size < this.#maxKeys) break;
      this.#windows.delete(key);
    }
  }
}

// --- Redis ----------------------------------------------------------------------------------

/** KEYS[1] the counter; ARGV[1] the window in ms. Returns {count, pttl}. */
const LUA_HIT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
`;

type RedisWithHit = Redis & { perseusRateHit(key: string, windowMs: number): Promise<[number, number]> };

export class RedisRateLimitStore implements RateLimitStore {
  readonly #client: RedisWithHit;
  readonly #prefix: string;
  readonly #ownsClient: boolean;

  /** Use an ioredis client (its options decide timeouts and reconnection), or `RedisRateLimitStore.connect(url)`. */
  constructor(client: Redis, options: { keyPrefix?: string; ownsClient?: boolean } = {}) {
    client.defineCommand('perseusRateHit', { numberOfKeys: 1, lua: LUA_HIT });
    this.#client = client as RedisWithHit;
    this.#prefix = options.keyPrefix ?? 'perseus:rate:';
    this.#ownsClient = options.ownsClient ?? false;
  }

  /** A client of its own on REDIS_URL, failing fast while Redis is down (see redisClientOptions). */
  static async connect(url: string, options: { keyPrefix?: string; connectTimeoutMs?: number; onClientError?: (error: Error) => void } = {}): Promise<RedisRateLimitStore> {
    const timeout = options.connectTimeoutMs ?? 3000;
    const client = new Redis(url, redisClientOptions(timeout, Math.min(timeout, 2000)));
    client.on('error', options.onClientError ?? (() => {}));
    await client.connect();
    return new RedisRateLimitStore(client, { keyPrefix: options.keyPrefix, ownsClient: true });
  }

  async hit(key: string, windowMs: number): Promise<WindowCount> {
    const [count, ttl] = await this.#client.perseusRateHit(this.#prefix + key, Math.max(1, Math.round(windowMs)));
    return { count: Number(count), resetMs: Number(ttl) };
  }

  async reset(key: string): Promise<void> {
    await this.#client.del(this.#prefix + key);
  }

  async close(): Promise<void> {
    if (!this.#ownsClient || this.#client.status === 'end') return;
    await this.#client.quit().catch(() => this.#client.disconnect());
  }
}

// --- limiter --------------------------------------------------------------------------------

export interface RateLimitRule {
  /** A short name, used in keys and in perseus_rate_limited_total{rule}. */
  name: string;
  /** Hits allowed per window; 0 turns the rule off. */
  limit: number;
  windowMs: number;
}

export interface RateLimitDecision {
  allowed: boolean;
  remaining: number;
  /** Seconds until the window ends (what Retry-After says), at least 1. */
  retryAfterSeconds: number;
}

export interface RateLimiterOptions {
  /** Called when the store failed and the hit was let through. */
  onStoreError?: (error: unknown, rule: string) => void;
  /** Called for every refused hit (e.g. metrics.rateLimited). */
  onLimited?: (rule: string) => void;
}

export class RateLimiter {
  readonly #store: RateLimitStore;
  readonly #rule: RateLimitRule;
  readonly #options: RateLimiterOptions;

  constructor(store: RateLimitStore, rule: RateLimitRule, options: RateLimiterOptions = {}) {
    if (!/^[a-z0-9_-]{1,40}$/.test(rule.name)) throw new Error(`rate limit rule name ${JSON.stringify(rule.name)}: use [a-z0-9_-]`);
    this.#store = store;
    this.#rule = rule;
    this.#options = options;
  }

  get rule(): RateLimitRule {
    return this.#rule;
  }

  /** Counts one hit for `subject` and says whether it is within the limit. */
  async consume(subject: string): Promise<RateLimitDecision> {
    const { name, limit, windowMs } = this.#rule;
    if (limit <= 0) return { allowed: true, remaining: Number.POSITIVE_INFINITY, retryAfterSeconds: 0 };
    let counted: WindowCount;
    try {
      counted = await this.#store.hit(`${name}:${subject}`, windowMs);
    } catch (error) {
      this.#options.onStoreError?.(error, name);
      return { allowed: true, remaining: limit, retryAfterSeconds: 0 };
    }
    const allowed = counted.count <= limit;
    if (!allowed) this.#options.onLimited?.(name);
    return { allowed, remaining: Math.max(0, limit - counted.count), retryAfterSeconds: Math.max(1, Math.ceil(counted.resetMs / 1000)) };
  }

  /** Forgets `subject`'s window (never throws). */
  async reset(subject: string): Promise<void> {
    await this.#store.reset(`${this.#rule.name}:${subject}`).catch((error: unknown) => this.#options.onStoreError?.(error, this.#rule.name));
  }
}

// --- answers --------------------------------------------------------------------------------

/**
 * PAR and token answer `429` with RFC 6749 JSON `temporarily_unavailable` and Retry-After.
 * Not `slow_down`: that code belongs to the device authorization grant's polling (RFC 8628
 * section 3.5) and clients of PAR and the code grant do not expect it. RFC 6749 has no rate
 * limit error; `temporarily_unavailable` is its "try again later" code, the one this server
 * already answers (with 503) when a store is down, so clients' retry handling covers both. The
 * 429 status and Retry-After (RFC 6585) say that it is a rate limit.
 */
export function answerMachineLimited(ctx: Context, decision: RateLimitDecision): void {
  oauthError(ctx, 429, 'temporarily_unavailable', `rate limit exceeded for this client; retry after ${decision.retryAfterSeconds} seconds`);
  ctx.set('Retry-After', String(decision.retryAfterSeconds));
}

/** How a refused sign-in is answered. The default is plain text; pass one that renders the sign-in page. */
export type PageLimitedAnswer = (ctx: Context, decision: RateLimitDecision) => void | Promise<void>;

export const plainTextLimited: PageLimitedAnswer = (ctx, decision) => {
  ctx.status = 429;
  ctx.type = 'text/plain; charset=utf-8';
  ctx.body = `Too many sign-in attempts. Please wait ${Math.ceil(decision.retryAfterSeconds / 60)} minute(s) and try again.\n`;
};

function answerPageLimited(answer: PageLimitedAnswer) {
  return async (ctx: Context, decision: RateLimitDecision) => {
    await answer(ctx, decision);
    ctx.status = 429;
    ctx.set('Retry-After', String(decision.retryAfterSeconds));
    ctx.set('Cache-Control', 'no-store');
  };
}

// --- sign-in --------------------------------------------------------------------------------

const SIGN_IN_PATHS = [/^\/interaction\/[^/]+\/sign-in$/, /^\/dashboard\/sign-in$/];

/** The account key of a sign-in: the hash the audit log keeps for a failed attempt (never the email). */
export function signInAccountKey(email: string): string {
  return hashIdentifier(email.trim().toLowerCase());
}

export function isSignInRequest(ctx: { method: string; path: string }): boolean {
  return ctx.method === 'POST' && SIGN_IN_PATHS.some((pattern) => pattern.test(ctx.path));
}

export interface SignInLimitsOptions {
  perIp: RateLimiter;
  perAccount: RateLimiter;
  /** How a refused sign-in is answered (status 429 and Retry-After are set after it). Default plain text. */
  answer?: PageLimitedAnswer;
}

export interface SignInLimits {
  /** Koa middleware: per-IP limit on POST /interaction/:uid/sign-in and POST /dashboard/sign-in. */
  middleware: Middleware;
  /** Counts one attempt on the account; the handler refuses the sign-in when `allowed` is false. */
  checkSignInAccount(emailHash: string): Promise<RateLimitDecision>;
  /** A good password: the account's window starts again. */
  signInSucceeded(emailHash: string): Promise<void>;
  /** Answers a refused attempt like the middleware does (for the handlers). */
  refuse(ctx: Context, decision: RateLimitDecision): Promise<void>;
}

export function signInLimits(options: SignInLimitsOptions): SignInLimits {
  const refuse = answerPageLimited(options.answer ?? plainTextLimited);
  return {
    middleware: async function signInRateLimit(ctx, next) {
      if (!isSignInRequest(ctx)) return next();
      const decision = await options.perIp.consume(ctx.ip || 'unknown');
      if (!decision.allowed) return refuse(ctx, decision);
      await next();
    },
    checkSignInAccount: (emailHash) => options.perAccount.consume(emailHash),
    signInSucceeded: (emailHash) => options.perAccount.reset(emailHash),
    refuse,
  };
}

// --- clients --------------------------------------------------------------------------------

/**
 * Koa middleware for the mTLS listener, after requireClientCertificate: limits each client
 * application (its certificate URL) on the given paths (PAR and token). A request without an
 * accepted certificate is not counted here (it is refused before it costs anything).
 */
export function clientRateLimit(limiter: RateLimiter, paths: readonly string[]): Middleware {
  const limited = new Set(paths);
  return async function clientRateLimit(ctx, next) {
    const verdict = verdictOf(ctx);
    if (ctx.method !== 'POST' || !limited.has(ctx.path) || !verdict?.ok) return next();
    const decision = await limiter.consume(verdict.applicationUrl);
    if (!decision.allowed) return answerMachineLimited(ctx, decision);
    await next();
  };
}
