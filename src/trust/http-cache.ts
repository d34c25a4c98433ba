// A small caching GET client for the IB1 trust services (the Directory and the Registry).
//
// It fetches only https URLs under the bases it was given, bounds every answer's size and time,
// honours Cache-Control max-age and revalidates with ETag / If-None-Match (a 304 keeps the
// cached body and renews its freshness). When a service fails (network error, timeout, 5xx, an
// answer too large or one the caller's parser refuses) the last good copy serves instead, and
// the failing URL is not asked again for a short back-off. The cache is a bounded LRU.
//
// The transport is node:https with an Agent whose trusted CAs can be extended (a throwaway CA in
// tests), so there is no runtime dependency beyond Node. Any WHATWG-fetch-compatible function
// can be injected instead.
import https from 'node:https';
import { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';

import type { LogSink } from '../http/request-log.ts';

/** The part of WHATWG fetch this module uses; global `fetch` and undici's `fetch` both fit. */
export type FetchLike = (url: string, init: {
  method: 'GET';
  headers: Record<string, string>;
  signal: AbortSignal;
  redirect: 'manual';
}) => Promise<Response>;

export type TrustServiceErrorCode =
  /** The URL is not under the configured base of the service: it was not fetched. */
  | 'not_allowed'
  /** The service failed and there is no usable cached copy. `cause` says why. */
  | 'unavailable';

export class TrustServiceError extends Error {
  readonly code: TrustServiceErrorCode;
  constructor(code: TrustServiceErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TrustServiceError';
    this.code = code;
  }
}

/** Why one fetch failed (used in logs and in the `cause` of an `unavailable` error). */
export class FetchFailure extends Error {
  readonly reason: 'timeout' | 'network' | 'status' | 'too_large' | 'bad_answer';
  constructor(reason: FetchFailure['reason'], message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'FetchFailure';
    this.reason = reason;
  }
}

export interface HttpCacheOptions {
  /** Short name of the service for log lines, e.g. `directory`. */
  service: string;
  /** https base URLs; only URLs under one of them (same origin, path below the base path) are fetched. */
  bases: string[];
  /** Transport; default: node:https with `ca`. */
  fetch?: FetchLike;
  /** Extra CA certificates (PEM) to trust besides the system's roots; only used by the default transport. */
  ca?: string | string[];
  /** Deadline of one request, connection to last byte. Default 5000 ms. */
  timeoutMs?: number;
  /** Most URLs kept (least recently used goes first). Default 1000. */
  maxEntries?: number;
  /** Largest answer body accepted. Default 256 KiB. */
  maxBytes?: number;
  /** Freshness of an answer without max-age (or with an unusable one). Default 300 s. */
  defaultMaxAgeSeconds?: number;
  /** Upper bound on any max-age, so a mistaken header can't pin a copy for long. Default 86400 s. */
  maxMaxAgeSeconds?: number;
  /** Freshness of a 404/410 answer without max-age. Default 60 s. */
  negativeMaxAgeSeconds?: number;
  /** After a failed fetch, how long the URL is not tried again (the cached copy serves). Default 30 s. */
  errorBackoffSeconds?: number;
  /** How long after its last confirmation a copy may still serve during an outage. Default 7 days. */
  maxStaleSeconds?: number;
  now?: () => Date;
  log?: LogSink;
}

/** How an answer was obtained: from a fresh copy, a new fetch, a 304, or a stale copy during a failure. */
export type CacheOutcome = 'fresh' | 'fetched' | 'revalidated' | 'stale';

export interface CacheResult<T> {
  /** The parsed answer; undefined when the service says the resource does not exist (404/410). */
  value: T | undefined;
  outcome: CacheOutcome;
}

/** Turns an answer body into a value; throwing marks the answer bad (the cached copy serves). */
export type Parse<T> = (body: Buffer, contentType: string) => T;

interface Entry {
  /** 'value': a parsed body; 'absent': 404/410; 'none': never answered well (only a back-off). */
  state: 'value' | 'absent' | 'none';
  value: unknown;
  etag?: string;
  lastModified?: string;
  /** Last time the service confirmed this copy (200 or 304), ms. */
  confirmedAt: number;
  freshUntil: number;
  /** Max-age in ms of the last answer, reused when a 304 carries no Cache-Control. */
  maxAgeMs: number;
  /** Not before this time (ms) after a failure. */
  retryAfter: number;
}

const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/** The default transport: node:https with keep-alive, TLS 1.2+, no redirects followed. */
export function httpsFetch(options: { ca?: string | string[] } = {}): FetchLike {
  const extra = options.ca === undefined ? [] : Array.isArray(options.ca) ? options.ca : [options.ca];
  const agent = new https.Agent({
    keepAlive: true,
    maxSockets: 16,
    minVersion: 'TLSv1.2',
    ...(extra.length ? { ca: [...rootCertificates, ...extra] } : {}),
  });
  return (url, init) => new Promise<Response>((resolve, reject) => {
    const target = new URL(url);
    if (target.protocol !== 'https:') {
      reject(new TypeError(`only https URLs are fetched, not ${target.protocol}`));
      return;
    }
    const req = https.request(target, { method: init.method, agent, headers: init.headers, signal: init.signal }, (res) => {
      try {
        const headers = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (Array.isArray(value)) for (const v of value) headers.append(name, v);
          else if (value !== undefined) headers.set(name, value);
        }
        const status = res.statusCode ?? 0;
        if (NULL_BODY_STATUSES.has(status)) {
          res.resume();
          resolve(new Response(null, { status, headers }));
        } else {
          resolve(new Response(Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>, { status, headers }));
        }
      } catch (error) {
        res.destroy();
        reject(error);
      }
    });
    req.on('error', reject);
    req.end();
  });
}

/** True when `url` is an https URL under `base`: same origin and a path at or below the base path. */
export function isUnder(base: URL, url: URL): boolean {
  if (url.protocol !== 'https:' || url.username || url.password) return false;
  if (url.origin !== base.origin) return false;
  const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
  return url.pathname.startsWith(basePath);
}

/** Validates a configured base URL: https, no credentials, query or fragment. */
export function parseBaseUrl(raw: string, what: string): URL {
  const url = URL.parse(raw);
  if (!url || url.protocol !== 'https:' || url.username || url.password || url.search || url.hash) {
    throw new TypeError(`${what} must be an https URL without credentials, query or fragment, got ${JSON.stringify(raw)}`);
  }
  return url;
}

function cacheControl(header: string | null): Map<string, string | true> {
  const directives = new Map<string, string | true>();
  for (const part of (header ?? '').split(',')) {
    const [rawName, ...rest] = part.split('=');
    const name = rawName.trim().toLowerCase();
    if (!name) continue;
    directives.set(name, rest.length ? rest.join('=').trim().replace(/^"(.*)"$/, '$1') : true);
  }
  return directives;
}

async function readBounded(response: Response, maxBytes: number, signal: AbortSignal): Promise<Buffer> {
  const declared = response.headers.get('content-length');
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > maxBytes) {
    await response.body?.cancel().catch(() => {});
    throw new FetchFailure('too_large', `answer of ${declared} bytes is larger than the ${maxBytes} allowed`);
  }
  if (!response.body) return Buffer.alloc(0);
  const reader = response.body.getReader();
  const onAbort = () => { reader.cancel(signal.reason).catch(() => {}); };
  signal.addEventListener('abort', onAbort, { once: true });
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw new FetchFailure('too_large', `answer is larger than the ${maxBytes} bytes allowed`);
      }
      chunks.push(value);
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  // A cancelled stream ends quietly: a body cut short by the deadline must not pass as complete.
  if (signal.aborted) throw new FetchFailure('timeout', 'answer not complete before the deadline');
  return Buffer.concat(chunks);
}

function describe(error: unknown, signal: AbortSignal): FetchFailure {
  if (error instanceof FetchFailure) return error;
  if (signal.aborted) return new FetchFailure('timeout', 'no complete answer before the deadline', { cause: error });
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return new FetchFailure('network', `cannot reach the service: ${code ?? (error as Error)?.message ?? String(error)}`, { cause: error });
}

export class HttpCache {
  readonly #service: string;
  readonly #bases: URL[];
  readonly #fetch: FetchLike;
  readonly #timeoutMs: number;
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #defaultMaxAgeMs: number;
  readonly #maxMaxAgeMs: number;
  readonly #negativeMaxAgeMs: number;
  readonly #backoffMs: number;
  readonly #maxStaleMs: number;
  readonly #now: () => number;
  readonly #log: LogSink;
  readonly #entries = new Map<string, Entry>();
  readonly #inFlight = new Map<string, Promise<CacheResult<unknown>>>();

  constructor(options: HttpCacheOptions) {
    this.#service = options.service;
    this.#bases = options.bases.map((b) => parseBaseUrl(b, `${options.service} base URL`));
    this.#fetch = options.fetch ?? httpsFetch({ ca: options.ca });
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#maxEntries = Math.max(1, options.maxEntries ?? 1000);
    this.#maxBytes = options.maxBytes ?? 256 * 1024;
    this.#defaultMaxAgeMs = (options.defaultMaxAgeSeconds ?? 300) * 1000;
    this.#maxMaxAgeMs = (options.maxMaxAgeSeconds ?? 86_400) * 1000;
    this.#negativeMaxAgeMs = (options.negativeMaxAgeSeconds ?? 60) * 1000;
    this.#backoffMs = (options.errorBackoffSeconds ?? 30) * 1000;
    this.#maxStaleMs = (options.maxStaleSeconds ?? 7 * 86_400) * 1000;
    const now = options.now ?? (() => new Date());
    this.#now = () => now().getTime();
    this.#log = options.log ?? (() => {});
  }

  /** The URL to fetch (fragment dropped), or undefined when it is not under a configured base. */
  allowed(url: string): URL | undefined {
    const parsed = URL.parse(url);
    if (!parsed) return undefined;
    parsed.hash = '';
    return this.#bases.some((base) => isUnder(base, parsed)) ? parsed : undefined;
  }

  /** The last good copy of `url`, fresh or not, without any network (undefined when none). */
  peek<T>(url: string): { value: T | undefined; fresh: boolean } | undefined {
    const target = this.allowed(url);
    const entry = target && this.#entries.get(target.href);
    if (!entry || entry.state === 'none') return undefined;
    return { value: entry.value as T | undefined, fresh: this.#now() < entry.freshUntil };
  }

  /**
   * The parsed answer for `url`: the cached copy while it is fresh, otherwise a (conditional)
   * fetch; during a failure the last good copy (`outcome: 'stale'`). Throws TrustServiceError
   * `not_allowed` for a URL outside the bases and `unavailable` when there is nothing to serve.
   */
  async get<T>(url: string, options: { accept: string; parse: Parse<T> }): Promise<CacheResult<T>> {
    const target = this.allowed(url);
    if (!target) throw new TrustServiceError('not_allowed', `${url} is not under the ${this.#service} base URL; not fetched`);
    const key = target.href;
    const entry = this.#touch(key);
    const now = this.#now();
    if (entry && entry.state !== 'none' && now < entry.freshUntil) {
      return { value: entry.value as T | undefined, outcome: 'fresh' };
    }
    if (entry && now < entry.retryAfter) {
      return this.#fallback<T>(key, entry, new FetchFailure('network', 'in back-off after a recent failure'), false);
    }
    let pending = this.#inFlight.get(key);
    if (!pending) {
      pending = this.#refresh(key, options as { accept: string; parse: Parse<unknown> }).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    return pending as Promise<CacheResult<T>>;
  }

  /**
   * One uncached, bounded GET of `url` (for content-addressed resources the caller verifies).
   * Throws TrustServiceError `not_allowed` or `unavailable` (with the FetchFailure as cause).
   */
  async fetchBytes(url: string, accept: string): Promise<Buffer> {
    const target = this.allowed(url);
    if (!target) throw new TrustServiceError('not_allowed', `${url} is not under the ${this.#service} base URL; not fetched`);
    const signal = AbortSignal.timeout(this.#timeoutMs);
    try {
      const response = await this.#fetch(target.href, { method: 'GET', headers: { accept }, signal, redirect: 'manual' });
      if (response.status !== 200) {
        await response.body?.cancel().catch(() => {});
        throw new FetchFailure('status', `answered ${response.status}`);
      }
      return await readBounded(response, this.#maxBytes, signal);
    } catch (error) {
      const failure = describe(error, signal);
      this.#log({ msg: 'trust service fetch failed', service: this.#service, url: target.href, reason: failure.reason, detail: failure.message });
      throw new TrustServiceError('unavailable', `${this.#service}: ${target.href}: ${failure.message}`, { cause: failure });
    }
  }

  /** Re-inserts an entry so the Map's order is least-recently-used first. */
  #touch(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry) {
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    }
    return entry;
  }

  #store(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  #maxAgeMs(headers: Headers, fallbackMs: number): { store: boolean; ms: number } {
    const directives = cacheControl(headers.get('cache-control'));
    if (directives.has('no-store')) return { store: false, ms: 0 };
    let ms = fallbackMs;
    const maxAge = directives.get('max-age');
    if (directives.has('no-cache')) ms = 0;
    else if (typeof maxAge === 'string' && /^\d+$/.test(maxAge)) ms = Number(maxAge) * 1000;
    const age = headers.get('age');
    if (age !== null && /^\d+$/.test(age)) ms -= Number(age) * 1000;
    return { store: true, ms: Math.min(Math.max(ms, 0), this.#maxMaxAgeMs) };
  }

  #fallback<T>(key: string, entry: Entry | undefined, failure: FetchFailure, log: boolean): CacheResult<T> {
    const now = this.#now();
    const usable = entry && entry.state !== 'none' && now - entry.confirmedAt <= this.#maxStaleMs;
    if (log) {
      this.#log({
        msg: 'trust service fetch failed', service: this.#service, url: key, reason: failure.reason, detail: failure.message,
        served: usable ? 'stale copy' : 'nothing',
      });
    }
    if (usable) return { value: entry.value as T | undefined, outcome: 'stale' };
    throw new TrustServiceError('unavailable', `${this.#service}: ${key}: ${failure.message}`, { cause: failure });
  }

  async #refresh(key: string, options: { accept: string; parse: Parse<unknown> }): Promise<CacheResult<unknown>> {
    const previous = this.#entries.get(key);
    const conditional = previous && previous.state === 'value';
    const headers: Record<string, string> = { accept: options.accept };
    if (conditional && previous.etag) headers['if-none-match'] = previous.etag;
    if (conditional && previous.lastModified) headers['if-modified-since'] = previous.lastModified;
    const signal = AbortSignal.timeout(this.#timeoutMs);
    try {
      const response = await this.#fetch(key, { method: 'GET', headers, signal, redirect: 'manual' });
      const status = response.status;
      const now = this.#now();

      if (status === 304) {
        if (!conditional) throw new FetchFailure('bad_answer', 'answered 304 to an unconditional request');
        const { store, ms } = this.#maxAgeMs(response.headers, previous.maxAgeMs);
        const etag = response.headers.get('etag') ?? previous.etag;
        const renewed: Entry = { ...previous, etag, confirmedAt: now, freshUntil: now + ms, maxAgeMs: ms, retryAfter: 0 };
        if (store) this.#store(key, renewed);
        else this.#entries.delete(key);
        return { value: previous.value, outcome: 'revalidated' };
      }

      if (status === 404 || status === 410) {
        await response.body?.cancel().catch(() => {});
        const { store, ms } = this.#maxAgeMs(response.headers, this.#negativeMaxAgeMs);
        if (store) {
          this.#store(key, { state: 'absent', value: undefined, confirmedAt: now, freshUntil: now + ms, maxAgeMs: ms, retryAfter: 0 });
        } else {
          this.#entries.delete(key);
        }
        return { value: undefined, outcome: 'fetched' };
      }

      if (status !== 200) {
        await response.body?.cancel().catch(() => {});
        throw new FetchFailure(status >= 300 && status < 400 ? 'bad_answer' : 'status', `answered ${status}`);
      }

      const body = await readBounded(response, this.#maxBytes, signal);
      let value: unknown;
      try {
        value = options.parse(body, response.headers.get('content-type') ?? '');
      } catch (error) {
        throw new FetchFailure('bad_answer', `answer refused: ${(error as Error)?.message ?? String(error)}`, { cause: error });
      }
      const { store, ms } = this.#maxAgeMs(response.headers, this.#defaultMaxAgeMs);
      const etag = response.headers.get('etag') ?? undefined;
      const lastModified = response.headers.get('last-modified') ?? undefined;
      if (store) {
        this.#store(key, { state: 'value', value, etag, lastModified, confirmedAt: now, freshUntil: now + ms, maxAgeMs: ms, retryAfter: 0 });
      } else {
        this.#entries.delete(key);
      }
      return { value, outcome: 'fetched' };
    } catch (error) {
      const failure = describe(error, signal);
      const entry = this.#entries.get(key);
      const retryAfter = this.#now() + this.#backoffMs;
      if (entry) entry.retryAfter = retryAfter;
      else this.#store(key, { state: 'none', value: undefined, confirmedAt: 0, freshUntil: 0, maxAgeMs: 0, retryAfter });
      return this.#fallback(key, entry, failure, true);
    }
  }
}
