// The resource server's side of RFC 7662: asks the authorization server about an access token
// over mutual TLS with the resource server's own member certificate, and keeps the answers for
// a short, bounded time.
//
// Why a bound: the scheme's "Withdrawal of Permission 1.0" says data APIs must fail no later than
// 60 minutes after withdrawal, and this project's authorization server answers `{"active":false}`
// at once after a withdrawal. A data provider therefore learns of a withdrawal at most one cache
// lifetime late; the cache is capped at 60 s so that delay stays small, and an answer is never
// kept past the token's own `exp`.
import { createHash, X509Certificate } from 'node:crypto';
import https from 'node:https';

import { x509 } from '../pki/x509.ts';
import { httpsJson, HttpsUnavailableError } from './https-json.ts';

export interface IntrospectionOptions {
  /** The authorization server's introspection endpoint (its mTLS alias), e.g. https://as.example:8444/introspect. */
  url: string;
  /** The resource server's own member certificate (leaf first, then its issuer), PEM. */
  cert: string;
  key: string;
  /** CA(s) that signed the authorization server's TLS certificate; default: the system roots. */
  ca?: string | string[];
  /** The resource server's client_id; default: the URI subjectAltName of `cert` (its application URL). */
  clientId?: string;
  /** Per call. Default 5000 ms. */
  timeoutMs?: number;
}

/** The introspection answer as received (RFC 7662 plus the Perseus members). */
export type IntrospectionAnswer = Record<string, unknown> & { active: boolean };

/** The authorization server could not give an answer; the guard fails closed (503). */
export class IntrospectionUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IntrospectionUnavailableError';
  }
}

/** Longest time an answer may be reused, whatever is configured. */
export const MAX_CACHE_SECONDS = 60;
export const DEFAULT_CACHE_SECONDS = 30;

/** The cache key: a hash of the token, so the token itself is never held beyond the request. */
export function tokenKey(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}

/** The single URI subjectAltName of a member certificate: its application URL. */
export function applicationUrlOf(certPem: string): string {
  const leaf = new X509Certificate(certPem);
  const parsed = new x509.X509Certificate(leaf.raw);
  const san = parsed.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = (san?.names.items ?? []).filter((name) => name.type === 'url').map((name) => name.value);
  if (uris.length !== 1) throw new Error('the resource server certificate must carry exactly one URI subjectAltName (its application URL)');
  return uris[0];
}

interface Entry {
  answer: IntrospectionAnswer;
  /** Epoch ms after which the entry is not used. */
  until: number;
}

export interface IntrospectorOptions extends IntrospectionOptions {
  /** Seconds an answer is reused; 0 disables the cache; capped at MAX_CACHE_SECONDS. */
  cacheSeconds?: number;
  /** Most answers kept (oldest dropped first). Default 10 000. */
  cacheSize?: number;
  now?: () => Date;
}

export class Introspector {
  readonly clientId: string;
  readonly #url: string;
  readonly #agent: https.Agent;
  readonly #timeoutMs: number;
  readonly #ttlMs: number;
  readonly #size: number;
  readonly #now: () => Date;
  readonly #entries = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<IntrospectionAnswer>>();

  constructor(options: IntrospectorOptions) {
    if (URL.parse(options.url)?.protocol !== 'https:') throw new Error(`the introspection URL must be https: ${options.url}`);
    const seconds = options.cacheSeconds ?? DEFAULT_CACHE_SECONDS;
    if (!Number.isFinite(seconds) || seconds < 0) throw new Error(`introspection cache seconds must be 0 or more, got ${seconds}`);
    this.#url = options.url;
    this.clientId = options.clientId ?? applicationUrlOf(options.cert);
    this.#agent = new https.Agent({ cert: options.cert, key: options.key, ca: options.ca, keepAlive: true, maxSockets: 16 });
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    this.#ttlMs = Math.min(seconds, MAX_CACHE_SECONDS) * 1000;
    this.#size = options.cacheSize ?? 10_000;
    this.#now = options.now ?? (() => new Date());
  }

  /** The answer for a token: from the cache while it is fresh, else from the authorization server. */
  async introspect(token: string): Promise<IntrospectionAnswer> {
    const key = tokenKey(token);
    const now = this.#now().getTime();
    const cached = this.#entries.get(key);
    if (cached && cached.until > now) return cached.answer;
    if (cached) this.#entries.delete(key);
    // Concurrent requests with one token share one call.
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#ask(token).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
      pending.then((answer) => this.#remember(key, answer), () => {});
    }
    return pending;
  }

  /** Forgets every cached answer. */
  clear(): void {
    this.#entries.clear();
  }

  close(): void {
    this.#entries.clear();
    this.#agent.destroy();
  }

  #remember(key: string, answer: IntrospectionAnswer): void {
    if (this.#ttlMs === 0) return;
    const now = this.#now().getTime();
    let until = now + this.#ttlMs;
    // Never past the token's own expiry.
    if (typeof answer.exp === 'number') until = Math.min(until, answer.exp * 1000);
    if (until <= now) return;
    this.#entries.delete(key);
    this.#entries.set(key, { answer, until });
    while (this.#entries.size > this.#size) this.#entries.delete(this.#entries.keys().next().value!);
  }

  async #ask(token: string): Promise<IntrospectionAnswer> {
    const body = new URLSearchParams({ token, token_type_hint: 'access_token', client_id: this.clientId }).toString();
    let response;
    try {
      response = await httpsJson(this.#url, {
        method: 'POST', agent: this.#agent, timeoutMs: this.#timeoutMs, maxBytes: 256 * 1024, body,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
    } catch (error) {
      if (error instanceof HttpsUnavailableError) throw new IntrospectionUnavailableError(error.message);
      throw error;
    }
    const json = response.json as Record<string, unknown> | undefined;
    if (response.status !== 200 || !json || typeof json !== 'object' || typeof json.active !== 'boolean') {
      // 401/403 here means this resource server is not allowed to introspect (RESOURCE_SERVERS,
      // certificate): nobody can be let in until that is fixed, so it is an outage, not a refusal.
      const error = typeof json?.error === 'string' ? ` (${json.error})` : '';
      throw new IntrospectionUnavailableError(`the introspection endpoint answered ${response.status}${error}`);
    }
    return json as IntrospectionAnswer;
  }
}
