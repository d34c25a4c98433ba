/**
 * OidcStore on Redis (ioredis), for the short-lived models: Session, Interaction,
 * PushedAuthorizationRequest, AuthorizationCode, ReplayDetection, AccessToken, ... (see
 * PRODUCTION_ROUTING in routed-oidc-store.ts).
 *
 * Keys (`prefix` defaults to `perseus:oidc:`; H(x) is hashIdentifier(x), base64url SHA-256):
 *
 * - `<prefix><Model>:<H(id)>`            hash: payload (JSON of preparePayload's body), jtiRedacted
 *                                        ('1' | '0'), consumedAt (epoch ms, absent when not
 *                                        consumed), grantId, uid (H(uid)), userCode (H(userCode)).
 *                                        Expires with the artefact: expiresIn + clock tolerance.
 * - `<prefix><Model>:uid:<H(uid)>`       string H(id): the findByUid index, same expiry as the entry.
 * - `<prefix><Model>:userCode:<H(code)>` string H(id): the findByUserCode index, same expiry.
 * - `<prefix>grant:<grantId>`            set of `<Model>:<H(id)>`: the revokeByGrantId index, one
 *                                        set per grant across models; expires with its longest-lived
 *                                        member (never, when a member never expires).
 *
 * Ids, uids and user codes only appear hashed (the payload rule is preparePayload's: Session and
 * DeviceCode keep their jti); grant ids are references and stay in clear, as in the SQLite store.
 *
 * Every write that touches more than one key is one Lua script, so it is atomic: upsert (entry
 * and indexes, consumption kept), consume (EXISTS + HSETNX: of concurrent calls exactly one
 * sets consumedAt, the others get InvalidGrant), destroy and revokeByGrantId.
 * Redis expires keys by itself (lazily on access, so an expired entry is never returned), hence
 * purgeExpired() has nothing to do and resolves to 0. A grant set can keep members whose entry
 * already expired until the set itself expires; revokeByGrantId skips them.
 *
 * Standalone Redis only: the scripts touch index keys they compute, which Redis Cluster forbids.
 *
 * Availability: the client is made to fail fast (see redisClientOptions): no offline queue, no
 * replay of commands lost with a connection (a consume whose reply was lost is NOT retried, it
 * rejects), a command timeout, and reconnection in the background forever. Every connection
 * level failure rejects with StoreUnavailableError('redis').
 */
import { createHash } from 'node:crypto';

import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';

import {
  expiresAtFor,
  grantAlreadyConsumed,
  grantNotFound,
  hashIdentifier,
  ModelAdapter,
  preparePayload,
  restorePayload,
} from './oidc-adapter-common.ts';
import { StoreUnavailableError, storeUnreachable } from './types.ts';
import type { AdapterPayload, OidcAdapter, OidcStore } from './types.ts';

export interface RedisOidcStoreOptions {
  /** Prefix of every key. Default `perseus:oidc:`. */
  keyPrefix?: string;
  /** Seconds added to every expiresIn, like oidc-provider's clockTolerance. Default 0. */
  clockToleranceSeconds?: number;
  /** Clock in epoch ms, used for consumedAt. Expiry itself is Redis's (relative TTLs). Default Date.now. */
  now?: () => number;
}

export interface RedisConnectOptions extends RedisOidcStoreOptions {
  /** Give up connecting after this long (start-up); also the TCP connect timeout of reconnects. Default 3000. */
  connectTimeoutMs?: number;
  /** A command without a reply after this long rejects (StoreUnavailableError). Default 2000. */
  commandTimeoutMs?: number;
  /** Called with client errors (connection refused while reconnecting, ...). Default: ignored. */
  onClientError?: (error: Error) => void;
}

const STORE_NAME = 'redis';
const DEFAULT_PREFIX = 'perseus:oidc:';

/** The ioredis options this store relies on: fail fast while down, reconnect by itself. */
export function redisClientOptions(connectTimeoutMs = 3000, commandTimeoutMs = 2000): RedisOptions {
  return {
    lazyConnect: true,
    // Commands issued while disconnected reject at once instead of queueing until reconnection.
    enableOfflineQueue: false,
    // Commands in flight when the connection drops reject at once (never replayed: a replayed
    // consume would turn the winner into a loser).
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: connectTimeoutMs,
    commandTimeout: commandTimeoutMs,
    // Reconnect forever, backing off to one attempt per second.
    retryStrategy: (times: number) => Math.min(times * 100, 1000),
    enableReadyCheck: true,
  };
}

// --- Lua -------------------------------------------------------------------------------------

/** Drop the uid / user code index keys of an entry, when they still point at it. */
const LUA_UNHOOK = `
local function unhook(prefix, model, idHash, grantId, uid, userCode, keepGrantId, keepUid, keepUserCode)
  if grantId and grantId ~= keepGrantId then
    redis.call('SREM', prefix .. 'grant:' .. grantId, model .. ':' .. idHash)
  end
  if uid and uid ~= keepUid then
    local k = prefix .. model .. ':uid:' .. uid
    if redis.call('GET', k) == idHash then redis.call('DEL', k) end
  end
  if userCode and userCode ~= keepUserCode then
    local k = prefix .. model .. ':userCode:' .. userCode
    if redis.call('GET', k) == idHash then redis.call('DEL', k) end
  end
end
`;

/**
 * KEYS[1] entry. ARGV: prefix, model, idHash, payload, jtiRedacted, consumedAt|'', grantId|'',
 * uidHash|'', userCodeHash|'', ttlMs|'' ('' = never expires).
 * An existing entry is live (Redis drops expired keys), so its consumedAt is kept.
 */
const LUA_UPSERT = `${LUA_UNHOOK}
local key = KEYS[1]
local prefix, model, idHash = ARGV[1], ARGV[2], ARGV[3]
local grantId, uid, userCode, ttl = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local old = redis.call('HMGET', key, 'consumedAt', 'grantId', 'uid', 'userCode')
local consumedAt = old[1] or ARGV[6]
unhook(prefix, model, idHash, old[2], old[3], old[4], grantId, uid, userCode)
redis.call('DEL', key)
redis.call('HSET', key, 'payload', ARGV[4], 'jtiRedacted', ARGV[5])
if consumedAt ~= '' then redis.call('HSET', key, 'consumedAt', consumedAt) end
if ttl ~= '' then redis.call('PEXPIRE', key, ttl) end
local function index(k)
  if ttl ~= '' then redis.call('SET', k, idHash, 'PX', ttl) else redis.call('SET', k, idHash) end
end
if uid ~= '' then
  redis.call('HSET', key, 'uid', uid)
  index(prefix .. model .. ':uid:' .. uid)
end
if userCode ~= '' then
  redis.call('HSET', key, 'userCode', userCode)
  index(prefix .. model .. ':userCode:' .. userCode)
end
if grantId ~= '' then
  redis.call('HSET', key, 'grantId', grantId)
  local g = prefix .. 'grant:' .. grantId
  local current = redis.call('PTTL', g)
  redis.call('SADD', g, model .. ':' .. idHash)
  if ttl == '' then
    redis.call('PERSIST', g)
  elseif current == -2 or (current >= 0 and current < tonumber(ttl)) then
    redis.call('PEXPIRE', g, ttl)
  end
end
return 1
`;

/** KEYS[1] entry. ARGV: now (epoch ms). Returns 1 consumed now, 0 already consumed, -1 absent. */
const LUA_CONSUME = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[1], 'consumedAt', ARGV[1])
`;

/** KEYS[1] entry. ARGV: prefix, model, idHash. */
const LUA_DESTROY = `${LUA_UNHOOK}
local old = redis.call('HMGET', KEYS[1], 'grantId', 'uid', 'userCode')
redis.call('DEL', KEYS[1])
unhook(ARGV[1], ARGV[2], ARGV[3], old[1], old[2], old[3], nil, nil, nil)
return 1
`;

/** KEYS[1] grant set. ARGV: prefix, model, grantId. Returns the number of entries removed. */
const LUA_REVOKE = `${LUA_UNHOOK}
local prefix, model, grantId = ARGV[1], ARGV[2], ARGV[3]
local head = model .. ':'
local removed = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if string.sub(member, 1, #head) == head then
    local idHash = string.sub(member, #head + 1)
    local key = prefix .. member
    local old = redis.call('HMGET', key, 'grantId', 'uid', 'userCode')
    if old[1] == grantId then
      redis.call('DEL', key)
      unhook(prefix, model, idHash, nil, old[2], old[3], nil, nil, nil)
      removed = removed + 1
    end
    redis.call('SREM', KEYS[1], member)
  end
end
return removed
`;

/**
 * KEYS[1] index key (uid or userCode). ARGV: entry key prefix (`<prefix><Model>:`), expected hash,
 * field name ('uid' | 'userCode'). Returns {payload, jtiRedacted, consumedAt} or nil.
 */
const LUA_FIND_BY_INDEX = `
local idHash = redis.call('GET', KEYS[1])
if not idHash then return false end
local v = redis.call('HMGET', ARGV[1] .. idHash, 'payload', 'jtiRedacted', 'consumedAt', ARGV[3])
if not v[1] or v[4] ~= ARGV[2] then return false end
return { v[1], v[2], v[3] }
`;

interface Script {
  lua: string;
  sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

const SCRIPTS = {
  upsert: script(LUA_UPSERT),
  consume: script(LUA_CONSUME),
  destroy: script(LUA_DESTROY),
  revoke: script(LUA_REVOKE),
  findByIndex: script(LUA_FIND_BY_INDEX),
};

// --- errors ----------------------------------------------------------------------------------

/** Server replies that mean "not available right now" rather than "this call is wrong". */
const UNAVAILABLE_REPLIES = /^(LOADING|BUSY|MASTERDOWN|READONLY|OOM|NOREPLICAS|TRYAGAIN|CLUSTERDOWN|MISCONF)\b/;

function isReplyError(error: unknown): error is Error {
  return error instanceof Error && error.name === 'ReplyError';
}

function toStoreError(error: unknown): unknown {
  if (error instanceof StoreUnavailableError) return error;
  // A reply to a command we got wrong (script error, wrong type) is a bug: a 500, not a 503.
  if (isReplyError(error) && !UNAVAILABLE_REPLIES.test(error.message)) return error;
  return new StoreUnavailableError(STORE_NAME, { cause: error });
}

function unreachable(url: string, cause: unknown): StoreUnavailableError {
  return storeUnreachable(STORE_NAME, url, cause);
}

function ensureModelName(modelName: string): void {
  if (typeof modelName !== 'string' || modelName === '') {
    throw new TypeError('model name must be a non-empty string');
  }
  // ':' separates key parts; 'grant' is the namespace of the grant sets.
  if (modelName.includes(':') || modelName === 'grant') {
    throw new TypeError(`model name ${JSON.stringify(modelName)} cannot be stored in redis`);
  }
}

type ScriptReply = [payload: string, jtiRedacted: string, consumedAt: string | null];

function toNumberOrNull(value: string | null | undefined): number | null {
  if (value === null || value === undefined || value === '') return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

/**
 * The Redis OidcStore. It owns its client: close() quits it. Use RedisOidcStore.connect(url) for
 * a client with the fail-fast options; a client passed to the constructor should use
 * redisClientOptions() as well.
 */
export class RedisOidcStore implements OidcStore {
  readonly name = STORE_NAME;

  readonly #client: Redis;
  readonly #prefix: string;
  readonly #clockToleranceSeconds: number;
  readonly #now: () => number;
  readonly #adapters = new Map<string, OidcAdapter>();
  #closed = false;

  constructor(client: Redis, options: RedisOidcStoreOptions = {}) {
    this.#client = client;
    // Connection errors surface as rejected operations; without a listener ioredis would also
    // print every reconnection failure.
    if (client.listenerCount('error') === 0) client.on('error', () => undefined);
    this.#prefix = options.keyPrefix ?? DEFAULT_PREFIX;
    this.#clockToleranceSeconds = options.clockToleranceSeconds ?? 0;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Connect to `url` (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS) and wait
   * until the server answers. Rejects within about connectTimeoutMs with a one-line
   * StoreUnavailableError (`redis at redis://host:port is unreachable: ...`); it never hangs and
   * leaves no client behind.
   */
  static async connect(url: string, options: RedisConnectOptions = {}): Promise<RedisOidcStore> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 3000;
    let client: Redis;
    try {
      client = new Redis(url, redisClientOptions(connectTimeoutMs, options.commandTimeoutMs ?? 2000));
    } catch (error) {
      throw unreachable(url, error);
    }
    let lastError: Error | undefined;
    const onError = (error: Error): void => {
      lastError = error;
      options.onClientError?.(error);
    };
    client.on('error', onError);

    let timer: NodeJS.Timeout | undefined;
    const attempt = client.connect().then(() => client.ping());
    attempt.catch(() => undefined); // raced below; a late rejection must not go unhandled
    try {
      await Promise.race([
        attempt,
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${connectTimeoutMs} ms`)), connectTimeoutMs);
        }),
      ]);
    } catch (error) {
      client.disconnect();
      // connect() only says "Connection is closed."; the reason came as an 'error' event.
      throw unreachable(url, lastError ?? error);
    } finally {
      clearTimeout(timer);
    }
    return new RedisOidcStore(client, options);
  }

  /** The underlying client (tests, health details). */
  get client(): Redis {
    return this.#client;
  }

  adapterFor(modelName: string): OidcAdapter {
    let adapter = this.#adapters.get(modelName);
    if (adapter === undefined) {
      ensureModelName(modelName);
      adapter = new ModelAdapter(this, modelName);
      this.#adapters.set(modelName, adapter);
    }
    return adapter;
  }

  async ping(): Promise<void> {
    await this.#run(async (client) => {
      if (client.status !== 'ready') {
        throw new StoreUnavailableError(STORE_NAME, { cause: new Error(`connection is ${client.status}`) });
      }
      await client.ping();
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const client = this.#client;
    if (client.status === 'ready') {
      try {
        await client.quit();
        return;
      } catch {
        // fall through: drop the connection
      }
    }
    client.disconnect();
  }

  /** Redis expires keys itself: nothing to purge. */
  async purgeExpired(): Promise<number> {
    if (this.#closed) throw new StoreUnavailableError(STORE_NAME, { cause: new Error('store is closed') });
    return 0;
  }

  // --- operations used by RedisOidcAdapter ---

  entryKey(model: string, idHash: string): string {
    return `${this.#prefix}${model}:${idHash}`;
  }

  async upsert(model: string, id: string, payload: AdapterPayload, expiresIn: number | undefined): Promise<void> {
    const now = this.#now();
    const prepared = preparePayload(id, payload, now);
    const expiresAt = expiresAtFor(expiresIn, now, this.#clockToleranceSeconds);
    const ttlMs = expiresAt === null ? null : expiresAt - now;
    if (ttlMs !== null && ttlMs <= 0) {
      // Already expired: it would be gone at once. Remove what was there instead.
      await this.destroy(model, id);
      return;
    }
    const idHash = hashIdentifier(id);
    await this.#eval(SCRIPTS.upsert, [this.entryKey(model, idHash)], [
      this.#prefix,
      model,
      idHash,
      JSON.stringify(prepared.body),
      prepared.jtiRedacted ? '1' : '0',
      prepared.consumedAtMs === null ? '' : String(Math.round(prepared.consumedAtMs)),
      prepared.grantId ?? '',
      prepared.uidHash ?? '',
      prepared.userCodeHash ?? '',
      ttlMs === null ? '' : String(ttlMs),
    ]);
  }

  async find(model: string, id: string): Promise<AdapterPayload | undefined> {
    const [payload, jtiRedacted, consumedAt] = await this.#run((client) =>
      client.hmget(this.entryKey(model, hashIdentifier(id)), 'payload', 'jtiRedacted', 'consumedAt'),
    );
    if (typeof payload !== 'string') return undefined;
    return restorePayload(JSON.parse(payload) as AdapterPayload, id, jtiRedacted === '1', toNumberOrNull(consumedAt));
  }

  async findByIndex(model: string, field: 'uid' | 'userCode', value: string): Promise<AdapterPayload | undefined> {
    const valueHash = hashIdentifier(value);
    const reply = (await this.#eval(
      SCRIPTS.findByIndex,
      [`${this.#prefix}${model}:${field}:${valueHash}`],
      [`${this.#prefix}${model}:`, valueHash, field],
    )) as ScriptReply | null;
    if (!Array.isArray(reply) || typeof reply[0] !== 'string') return undefined;
    const [payload, jtiRedacted, consumedAt] = reply;
    return restorePayload(JSON.parse(payload) as AdapterPayload, undefined, jtiRedacted === '1', toNumberOrNull(consumedAt));
  }

  async consume(model: string, id: string): Promise<void> {
    const result = Number(await this.#eval(SCRIPTS.consume, [this.entryKey(model, hashIdentifier(id))], [String(this.#now())]));
    if (result === 1) return;
    throw result === 0 ? grantAlreadyConsumed() : grantNotFound();
  }

  async destroy(model: string, id: string): Promise<void> {
    const idHash = hashIdentifier(id);
    await this.#eval(SCRIPTS.destroy, [this.entryKey(model, idHash)], [this.#prefix, model, idHash]);
  }

  async revokeByGrantId(model: string, grantId: string): Promise<void> {
    await this.#eval(SCRIPTS.revoke, [`${this.#prefix}grant:${grantId}`], [this.#prefix, model, grantId]);
  }

  async #eval(s: Script, keys: string[], args: string[]): Promise<unknown> {
    return this.#run(async (client) => {
      try {
        return await client.evalsha(s.sha, keys.length, ...keys, ...args);
      } catch (error) {
        // Scripts are cached per server process: load it again after a restart or SCRIPT FLUSH.
        if (isReplyError(error) && error.message.startsWith('NOSCRIPT')) {
          return client.eval(s.lua, keys.length, ...keys, ...args);
        }
        throw error;
      }
    });
  }

  async #run<T>(operation: (client: Redis) => Promise<T>): Promise<T> {
    if (this.#closed) {
      throw new StoreUnavailableError(STORE_NAME, { cause: new Error('store is closed') });
    }
    try {
      return await operation(this.#client);
    } catch (error) {
      throw toStoreError(error);
    }
  }
}

