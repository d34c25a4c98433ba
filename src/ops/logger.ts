/**
 * Structured logs (pino): one JSON object a line on stdout, with a request id on every line
 * written while a request is handled.
 *
 * Secrets stay out in two independent ways:
 *  1. the request line is built from an ALLOW-LIST of fields (listener, method, normalised
 *     route, status, time, client certificate URL/member/roles, OAuth error code): no path ids,
 *     query string, body, header or cookie is ever read into it;
 *  2. pino REDACTION censors, on every other line (also lines of careless code that logs a whole
 *     header set, query or form), the keys that carry secrets: passwords, tokens, codes of
 *     PKCE, client secrets, cookies, Authorization, and whole `query`/`body`/`form` objects.
 * Lines from the older `LogSink` callers go through `logSink()`, which also scrubs secret-named
 * keys at any depth and turns a `path` into its normalised route.
 *
 * The request id: `X-Request-Id` from the request when it comes through a trusted proxy (and
 * looks like an id: 1-128 of [A-Za-z0-9._:-]), otherwise a new UUID. It is answered in
 * `X-Request-Id`, kept on `ctx.state.requestId`, and added to every line logged inside the
 * request's async context (AsyncLocalStorage), whichever logger wrote it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

import type { Context, Middleware } from 'koa';
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

import type { LogSink } from '../http/request-log.ts';
import { verdictOf } from '../http/client-certificate.ts';
import { VIA_TRUSTED_PROXY } from '../http/trusted-proxies.ts';
import { oauthErrorOf } from './outcome.ts';
import { normaliseRoute } from './routes.ts';

export type { Logger } from 'pino';

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const CENSOR = '[redacted]';

/** Keys whose values are secrets wherever they appear (as a key name, case-insensitive). */
const SECRET_KEY = /^(pass(word)?|new_?password|secret|client_secret|token|access_token|refresh_token|id_token|subject_token|code_verifier|authorization|proxy-authorization|cookie|cookies|set-cookie|x-api-key|api_key|query|querystring|search|body|form|rawbody|request_uri)$/i;

/** The same keys as pino redaction paths, at the top level and one or two levels down. */
const SECRET_KEYS = [
  'password', 'new_password', 'secret', 'client_secret', 'token', 'access_token', 'refresh_token', 'id_token', 'subject_token',
  'code_verifier', 'authorization', 'cookie', 'cookies', 'query', 'querystring', 'body', 'form', 'request_uri',
];
export const REDACT_PATHS: string[] = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((key) => `*.${key}`),
  ...SECRET_KEYS.map((key) => `*.*.${key}`),
  '["set-cookie"]', '*["set-cookie"]', '*.*["set-cookie"]',
  '["proxy-authorization"]', '*["proxy-authorization"]', '*.*["proxy-authorization"]',
  '["x-api-key"]', '*["x-api-key"]', '*.*["x-api-key"]',
];

/** Fields the request line may carry; anything else is dropped before it is written. */
export const REQUEST_LINE_FIELDS = ['listener', 'method', 'route', 'status', 'ms', 'client', 'member', 'roles', 'certificate', 'oauthError', 'error'] as const;

interface RequestScope {
  requestId: string;
}

const scope = new AsyncLocalStorage<RequestScope>();

/** The id of the request being handled in this async context, if any. */
export function currentRequestId(): string | undefined {
  return scope.getStore()?.requestId;
}

export interface LoggerOptions {
  /** Default info. */
  level?: LevelWithSilent;
  /** Default stdout (pino's sonic-boom on fd 1). Tests pass `{ write(line) {…} }`. */
  destination?: DestinationStream;
  /** Fields on every line, e.g. `{ service: 'perseus-as' }`. Default none (no pid/hostname either). */
  base?: Record<string, unknown>;
}

/** Bytes of log lines gathered before one write to stdout (see stdoutDestination). */
const STDOUT_BATCH_BYTES = 4096;
/** The longest a line waits in that batch. */
const STDOUT_FLUSH_MS = 1000;

/**
 * stdout for log lines, written in batches: one write per request line cost ~6-15 µs of an
 * introspection's ~100 µs (bench/). A line waits at most a second, an error or fatal line not at
 * all, and pino flushes what is left when the process exits.
 */
function stdoutDestination(): DestinationStream & { flush(): void } {
  const destination = pino.destination({ dest: 1, sync: false, minLength: STDOUT_BATCH_BYTES });
  const flushNow = destination.flush.bind(destination);
  const flush = () => {
    try {
      flushNow();
    } catch {
      // stdout already closed at exit: nothing left to do
    }
  };
  setInterval(flush, STDOUT_FLUSH_MS).unref();
  return { write: (line: string) => destination.write(line), flush };
}

/**
 * pino's isoTime, formatted once per millisecond: the hottest calls answer several requests a
 * millisecond, and `toISOString` was ~1.5 % of an introspection's CPU (bench/).
 */
function isoTimeOncePerMs(): () => string {
  let formattedMs = Number.NaN;
  let formatted = '';
  return () => {
    const now = Date.now();
    if (now !== formattedMs) {
      formattedMs = now;
      formatted = `,"time":"${new Date(now).toISOString()}"`;
    }
    return formatted;
  };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const stdout = options.destination ? undefined : stdoutDestination();
  return pino({
    level: options.level ?? 'info',
    base: options.base ?? null,
    timestamp: isoTimeOncePerMs(),
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    mixin: () => {
      const requestId = scope.getStore()?.requestId;
      return requestId ? { reqId: requestId } : {};
    },
    hooks: {
      // Errors reach the log at once, not with the next batch.
      logMethod(args, method, level) {
        method.apply(this, args);
        if (stdout && level >= 50) stdout.flush();
      },
    },
  }, options.destination ?? stdout!);
}

/**
 * A pino logger whose lines go to a LogSink, parsed back into objects: for callers that hand the
 * server a sink (tests pass silentSink or a capturing one; TEST_LOG passes stdoutSink).
 */
export function loggerFromSink(sink: LogSink, level: LevelWithSilent = 'info'): Logger {
  return createLogger({ level, destination: { write: (line: string) => sink(JSON.parse(line) as Record<string, unknown>) } });
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The request's id: the `X-Request-Id` a trusted proxy sent, when it looks like an id; else new.
 * Default trust: the request came through a proxy listed in TRUSTED_PROXIES (trustedForwarding
 * marks it on ctx.state.viaTrustedProxy; without that middleware nothing is trusted).
 */
export function requestIdOf(ctx: Context, isTrustedProxy: (ctx: Context) => boolean = viaTrustedProxy): string {
  const offered = ctx.get('x-request-id');
  return offered && REQUEST_ID.test(offered) && isTrustedProxy(ctx) ? offered : randomUUID();
}

export function viaTrustedProxy(ctx: Context): boolean {
  return ctx.state[VIA_TRUSTED_PROXY] === true;
}

export interface RequestLoggerOptions {
  logger: Logger;
  listener: 'public' | 'mtls';
  /** Whether the peer is a trusted proxy whose X-Request-Id is believed. Default viaTrustedProxy. */
  isTrustedProxy?: (ctx: Context) => boolean;
}

function pick(line: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of REQUEST_LINE_FIELDS) if (line[field] !== undefined) out[field] = line[field];
  return out;
}

/**
 * Koa middleware: request id, `ctx.state.log` (a child logger for the handlers), and one line
 * per request (`msg: "request"`). Put it first, right after trustedForwarding, so that the id
 * covers every line of the request.
 */
export function requestLogger(options: RequestLoggerOptions): Middleware {
  const { logger, listener } = options;
  const child = logger.child({ listener });
  // The request line is built from REQUEST_LINE_FIELDS only (no input reaches it), so it skips
  // redaction: walking the redaction paths cost ~40 µs a line, 30x the write itself (measured
  // in bench/; the hottest machine calls take ~100 µs in all). Handlers' lines stay redacted.
  const requestLine = logger.child({ listener }, { redact: [] });
  return async function requestLogger(ctx, next) {
    const requestId = requestIdOf(ctx, options.isTrustedProxy);
    ctx.state.requestId = requestId;
    ctx.state.log = child;
    ctx.set('X-Request-Id', requestId);
    await scope.run({ requestId }, async () => {
      const started = performance.now();
      let failed: unknown;
      try {
        await next();
      } catch (err) {
        failed = err;
        throw err;
      } finally {
        const verdict = verdictOf(ctx);
        const declared = (failed as { status?: unknown } | undefined)?.status;
        const status = failed === undefined ? ctx.status : typeof declared === 'number' ? declared : 500;
        const line = pick({
          method: ctx.method,
          route: normaliseRoute(ctx.path),
          status,
          ms: Math.round((performance.now() - started) * 10) / 10,
          ...(verdict?.ok ? { client: verdict.applicationUrl, member: verdict.member, roles: verdict.roles } : {}),
          ...(verdict && !verdict.ok && listener === 'mtls' ? { certificate: verdict.code } : {}),
          oauthError: failed === undefined ? oauthErrorOf(ctx) : undefined,
          // The error's class only: a message may quote input.
          error: failed === undefined ? undefined : ((failed as Error)?.name ?? 'Error'),
        });
        const level = status >= 500 ? 'error' : 'info';
        requestLine[level](line, 'request');
      }
    });
  };
}

/** Copies a value, with secret-named keys censored at any depth and `path` normalised to its route. */
function scrub(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return value;
  if (value instanceof Error) return { name: value.name };
  if (depth > 5) return '[depth]';
  if (Array.isArray(value)) return value.map((item) => scrub(item, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (SECRET_KEY.test(key)) out[key] = CENSOR;
    else if (key === 'path' && typeof item === 'string') out.route = normaliseRoute(item);
    else out[key] = scrub(item, depth + 1);
  }
  return out;
}

/**
 * A LogSink (src/http/request-log.ts) writing through pino, so every existing `log({...})`
 * keeps working: `msg` becomes the message, `level` (if one of pino's) the level, the rest is
 * scrubbed (see above) and redacted. Lines written during a request carry its id.
 */
export function logSink(logger: Logger): LogSink {
  return (line) => {
    const { msg, level, ...rest } = line;
    const lvl = typeof level === 'string' && (LOG_LEVELS as readonly string[]).includes(level) && level !== 'silent' ? (level as Exclude<LevelWithSilent, 'silent'>) : 'info';
    logger[lvl](scrub(rest, 0) as Record<string, unknown>, typeof msg === 'string' ? msg : 'log');
  };
}
