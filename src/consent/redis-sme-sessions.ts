/**
 * SmeSessionStore on Redis (ioredis). One string key per session:
 *
 *   `<prefix><H(id)>` -> JSON { userId, organisationId, email, expiresAt (epoch ms) }
 *
 * H is hashIdentifier (base64url SHA-256): the session id (the cookie value) is never stored.
 * The key expires with the session (PX = expiresAt - now), so Redis removes ended sessions by
 * itself; find() also compares expiresAt with the `now` it is given, like the SQLite store.
 *
 * Give it a client made with redisClientOptions() (src/adapters/redis-oidc-store.ts): commands
 * then fail fast while Redis is down, and every such failure rejects with
 * StoreUnavailableError('redis'). The store does not own the client (no close()).
 */
import { randomBytes } from 'node:crypto';

import type { Redis } from 'ioredis';

import { hashIdentifier } from '../adapters/oidc-adapter-common.ts';
import { StoreUnavailableError } from '../adapters/types.ts';
import type { SmeSession, SmeSessionStore } from './sme-sessions.ts';

export interface RedisSmeSessionStoreOptions {
  /** Prefix of every key. Default `perseus:sme-session:`. */
  keyPrefix?: string;
  /** Clock in epoch ms, for the keys' time to live. Default Date.now. */
  now?: () => number;
}

const STORE_NAME = 'redis';

/** Server replies that mean "not available right now" (as in redis-oidc-store.ts). */
const UNAVAILABLE_REPLIES = /^(LOADING|BUSY|MASTERDOWN|READONLY|OOM|NOREPLICAS|TRYAGAIN|CLUSTERDOWN|MISCONF)\b/;

function toStoreError(error: unknown): unknown {
  if (error instanceof StoreUnavailableError) return error;
  // A reply to a command we got wrong is a bug (500), not an outage (503).
  if (error instanceof Error && error.name === 'ReplyError' && !UNAVAILABLE_REPLIES.test(error.message)) return error;
  return new StoreUnavailableError(STORE_NAME, { cause: error });
}

interface StoredSession { userId: string; organisationId: string; email: string; expiresAt: number }

export class RedisSmeSessionStore implements SmeSessionStore {
  readonly #client: Redis;
  readonly #prefix: string;
  readonly #now: () => number;

  constructor(client: Redis, options: RedisSmeSessionStoreOptions = {}) {
    this.#client = client;
    if (client.listenerCount('error') === 0) client.on('error', () => undefined);
    this.#prefix = options.keyPrefix ?? 'perseus:sme-session:';
    this.#now = options.now ?? Date.now;
  }

  /** The key of session `id` (tests). */
  keyOf(id: string): string {
    return `${this.#prefix}${hashIdentifier(id)}`;
  }

  async #run<T>(operation: (client: Redis) => Promise<T>): Promise<T> {
    try {
      return await operation(this.#client);
    } catch (error) {
      throw toStoreError(error);
    }
  }

  async create(s: SmeSession): Promise<string> {
    const id = randomBytes(32).toString('base64url');
    const ttlMs = s.expiresAt.getTime() - this.#now();
    // A session that has already ended is not stored: find() could never return it.
    if (ttlMs <= 0) return id;
    const value: StoredSession = { userId: s.userId, organisationId: s.organisationId, email: s.email, expiresAt: s.expiresAt.getTime() };
    await this.#run((client) => client.set(this.keyOf(id), JSON.stringify(value), 'PX', Math.ceil(ttlMs)));
    return id;
  }

  async find(id: string, now: Date): Promise<SmeSession | undefined> {
    if (typeof id !== 'string' || id === '') return undefined;
    const raw = await this.#run((client) => client.get(this.keyOf(id)));
    if (raw === null) return undefined;
    const stored = JSON.parse(raw) as StoredSession;
    if (stored.expiresAt <= now.getTime()) return undefined;
    return { userId: stored.userId, organisationId: stored.organisationId, email: stored.email, expiresAt: new Date(stored.expiresAt) };
  }

  async destroy(id: string): Promise<void> {
    if (typeof id !== 'string' || id === '') return;
    await this.#run((client) => client.del(this.keyOf(id)));
  }
}
