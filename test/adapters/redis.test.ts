/**
 * RedisOidcStore against a real redis-server (test/support/services.ts): the shared contract,
 * then what only Redis shows: hashed keys, TTLs, index hygiene, start-up failure and a server
 * that dies and comes back.
 */
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import { errors } from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { RedisOidcStore } from '../../src/adapters/redis-oidc-store.ts';
import { StoreUnavailableError } from '../../src/adapters/types.ts';
import type { OidcStore } from '../../src/adapters/types.ts';
import { SKIP_SERVICES, startRedis, uniqueKeyPrefix } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { describeOidcAdapterContract, randomId, tokenPayload } from './oidc-adapter-contract.ts';

/** Resolves to the rejection reason (or fails the test when it resolves). */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (reason: unknown) => reason,
  );
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls ping() until the store answers again. */
async function waitForPing(store: OidcStore, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await store.ping();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(100);
    }
  }
}

describe.skipIf(SKIP_SERVICES)('RedisOidcStore (real redis-server)', () => {
  let redis: RunningService;
  const stores: RedisOidcStore[] = [];

  async function openStore(options: Parameters<typeof RedisOidcStore.connect>[1] = {}): Promise<RedisOidcStore> {
    const store = await RedisOidcStore.connect(redis.url, { keyPrefix: uniqueKeyPrefix('redis'), ...options });
    stores.push(store);
    return store;
  }

  /** Every key under `prefix` with its value and TTL. */
  async function dump(store: RedisOidcStore, prefix: string): Promise<Array<{ key: string; type: string; pttl: number; value: unknown }>> {
    const client = store.client;
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const entries = [];
    for (const key of keys.sort()) {
      const type = await client.type(key);
      const value = type === 'hash' ? await client.hgetall(key) : type === 'set' ? await client.smembers(key) : await client.get(key);
      entries.push({ key, type, pttl: await client.pttl(key), value });
    }
    return entries;
  }

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    await Promise.allSettled(stores.map((store) => store.close()));
    await redis?.stop();
  });

  describeOidcAdapterContract('redis', async () => openStore());

  it('never stores ids in clear; uid and user code lookups are hashed', async () => {
    const prefix = uniqueKeyPrefix('clear');
    const store = await openStore({ keyPrefix: prefix });
    const models = ['AccessToken', 'AuthorizationCode', 'PushedAuthorizationRequest', 'ClientCredentials', 'Interaction', 'ReplayDetection'];
    const ids = new Map(models.map((model) => [model, randomId()]));
    for (const [model, id] of ids) {
      await store.adapterFor(model).upsert(id, tokenPayload(id, { kind: model, grantId: 'grant-clear' }), 600);
    }
    const code = ids.get('AuthorizationCode') ?? '';
    await store.adapterFor('AuthorizationCode').consume(code);
    const uid = randomId();
    const sessionId = randomId();
    await store.adapterFor('Session').upsert(sessionId, { jti: sessionId, kind: 'Session', uid }, 600);
    await store.adapterFor('DeviceCode').upsert(randomId(), { kind: 'DeviceCode', userCode: 'WDJB-MJHT', grantId: 'grant-clear' }, 600);

    const entries = await dump(store, prefix);
    const text = JSON.stringify(entries);
    for (const id of ids.values()) {
      expect(text).not.toContain(id);
      expect(entries.some((entry) => entry.key.endsWith(hashIdentifier(id)))).toBe(true);
    }
    // uid and user code: the lookup keys and fields are hashes; only the library's own payload
    // keeps them (documented in preparePayload, like the Session id).
    const keysAndIndexes = JSON.stringify(entries.map((entry) => [entry.key, entry.type === 'hash' ? { ...(entry.value as object), payload: undefined } : entry.value]));
    expect(keysAndIndexes).not.toContain(uid);
    expect(keysAndIndexes).not.toContain('WDJB-MJHT');
    expect(entries.map((entry) => entry.key)).toContain(`${prefix}Session:uid:${hashIdentifier(uid)}`);
    expect(entries.map((entry) => entry.key)).toContain(`${prefix}DeviceCode:userCode:${hashIdentifier('WDJB-MJHT')}`);
    const token = entries.find((entry) => entry.key === `${prefix}AccessToken:${hashIdentifier(ids.get('AccessToken') ?? '')}`);
    expect(token?.type).toBe('hash');
    expect(JSON.parse(String((token?.value as Record<string, string>).payload))).not.toHaveProperty('jti');

    // find puts jti back from the id.
    for (const [model, id] of ids) {
      expect((await store.adapterFor(model).find(id))?.jti).toBe(id);
    }
  });

  it('gives every key a TTL: entries and uid indexes expire with the artefact, a grant set with its longest member', async () => {
    const prefix = uniqueKeyPrefix('ttl');
    const store = await openStore({ keyPrefix: prefix, clockToleranceSeconds: 5 });
    const client = store.client;
    const [short, long, sessionId, uid] = [randomId(), randomId(), randomId(), randomId()];
    await store.adapterFor('AccessToken').upsert(short, tokenPayload(short, { grantId: 'grant-ttl' }), 60);
    await store.adapterFor('AuthorizationCode').upsert(long, tokenPayload(long, { kind: 'AuthorizationCode', grantId: 'grant-ttl' }), 600);
    await store.adapterFor('Session').upsert(sessionId, { jti: sessionId, kind: 'Session', uid }, 300);

    const near = (actual: number, expected: number): void => {
      expect(actual).toBeGreaterThan(expected - 3000);
      expect(actual).toBeLessThanOrEqual(expected);
    };
    near(await client.pttl(`${prefix}AccessToken:${hashIdentifier(short)}`), 65_000); // expiresIn + tolerance
    near(await client.pttl(`${prefix}AuthorizationCode:${hashIdentifier(long)}`), 605_000);
    near(await client.pttl(`${prefix}Session:${hashIdentifier(sessionId)}`), 305_000);
    near(await client.pttl(`${prefix}Session:uid:${hashIdentifier(uid)}`), 305_000);
    near(await client.pttl(`${prefix}grant:grant-ttl`), 605_000);
    expect(await client.smembers(`${prefix}grant:grant-ttl`)).toHaveLength(2);

    // Every key has a TTL.
    for (const entry of await dump(store, prefix)) {
      expect(entry.pttl, entry.key).toBeGreaterThan(0);
    }

    // A member without expiry makes its grant set permanent too.
    const forever = randomId();
    await store.adapterFor('AccessToken').upsert(forever, tokenPayload(forever, { grantId: 'grant-ttl' }));
    expect(await client.pttl(`${prefix}AccessToken:${hashIdentifier(forever)}`)).toBe(-1);
    expect(await client.pttl(`${prefix}grant:grant-ttl`)).toBe(-1);
  });

  it('leaves no orphan keys: destroy and revokeByGrantId remove the entry and its indexes', async () => {
    const prefix = uniqueKeyPrefix('orphans');
    const store = await openStore({ keyPrefix: prefix });
    const [a, b, sessionId, uid] = [randomId(), randomId(), randomId(), randomId()];
    await store.adapterFor('AccessToken').upsert(a, tokenPayload(a, { grantId: 'g-orphans' }), 600);
    await store.adapterFor('AccessToken').upsert(b, tokenPayload(b, { grantId: 'g-orphans' }), 600);
    await store.adapterFor('Session').upsert(sessionId, { jti: sessionId, kind: 'Session', uid, grantId: 'g-orphans' }, 600);
    await store.adapterFor('Session').upsert(sessionId, { jti: sessionId, kind: 'Session', uid: randomId(), grantId: 'g-orphans' }, 600);
    expect(await dump(store, prefix)).toHaveLength(5); // 2 tokens, session, its (new) uid index, the grant set

    await store.adapterFor('AccessToken').revokeByGrantId('g-orphans');
    expect((await dump(store, prefix)).map((entry) => entry.key)).toEqual(
      expect.arrayContaining([`${prefix}Session:${hashIdentifier(sessionId)}`, `${prefix}grant:g-orphans`]),
    );
    await store.adapterFor('Session').destroy(sessionId);

    expect(await dump(store, prefix)).toEqual([]);
  });

  it('consume is atomic across connections: two clients race 25 consumes each, one wins', async () => {
    const prefix = uniqueKeyPrefix('race');
    const [first, second] = [await openStore({ keyPrefix: prefix }), await openStore({ keyPrefix: prefix })];
    for (let round = 0; round < 5; round += 1) {
      const id = randomId();
      await first.adapterFor('AuthorizationCode').upsert(id, tokenPayload(id, { kind: 'AuthorizationCode' }), 60);
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => (i % 2 ? first : second).adapterFor('AuthorizationCode').consume(id)),
      );
      expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
      for (const result of results) {
        if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(errors.InvalidGrant);
      }
    }
  });

  it('start-up against a closed port fails within 5 s with a one-line StoreUnavailableError naming redis', async () => {
    const port = await closedPort();
    const started = Date.now();
    const error = await rejectionOf(RedisOidcStore.connect(`redis://app:s3cret@127.0.0.1:${port}/0`, { connectTimeoutMs: 2000 }));

    expect(Date.now() - started).toBeLessThan(5000);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as StoreUnavailableError).store).toBe('redis');
    const { message } = error as Error;
    expect(message).toMatch(new RegExp(`^redis at redis://127\\.0\\.0\\.1:${port}/0 is unreachable`));
    expect(message).not.toContain('\n');
    expect(message).not.toContain('s3cret');
  });

  it('start-up against a server that accepts but never answers fails within 5 s (never hangs)', async () => {
    const sockets = new Set<Socket>();
    const silent: Server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const started = Date.now();
      const error = await rejectionOf(RedisOidcStore.connect(`redis://127.0.0.1:${port}`, { connectTimeoutMs: 1500 }));
      expect(Date.now() - started).toBeLessThan(5000);
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect((error as Error).message).toMatch(new RegExp(`^redis at redis://127\\.0\\.0\\.1:${port} is unreachable`));
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('server killed mid-way: operations and ping reject quickly with StoreUnavailableError; after a restart the same store works again', async () => {
    const store = await openStore();
    const tokens = store.adapterFor('AccessToken');
    const before = randomId();
    await tokens.upsert(before, tokenPayload(before), 600);

    // Operations in flight when the server dies settle too (resolve or StoreUnavailableError), none hangs.
    const inFlight = Promise.allSettled(Array.from({ length: 200 }, () => tokens.find(before)));
    await redis.kill();
    const settled = await inFlight;
    for (const result of settled) {
      if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(StoreUnavailableError);
    }

    const id = randomId();
    const operations: Array<[string, () => Promise<unknown>]> = [
      ['upsert', () => tokens.upsert(id, tokenPayload(id), 600)],
      ['find', () => tokens.find(id)],
      ['findByUid', () => store.adapterFor('Session').findByUid(randomId())],
      ['consume', () => tokens.consume(id)],
      ['destroy', () => tokens.destroy(id)],
      ['revokeByGrantId', () => tokens.revokeByGrantId('grant-1')],
      ['ping', () => store.ping()],
    ];
    for (const [name, operation] of operations) {
      const started = Date.now();
      const error = await rejectionOf(operation());
      expect(error, name).toBeInstanceOf(StoreUnavailableError);
      expect((error as StoreUnavailableError).store).toBe('redis');
      expect(Date.now() - started, name).toBeLessThan(2500);
    }

    await redis.restart();
    await waitForPing(store);

    // The restarted server is empty (no persistence in the tests), and scripts must be loaded again.
    await tokens.upsert(id, tokenPayload(id), 600);
    expect(await tokens.find(id)).toEqual(tokenPayload(id, { iat: expect.any(Number), exp: expect.any(Number) }));
    await tokens.consume(id);
    await expect(tokens.consume(id)).rejects.toBeInstanceOf(errors.InvalidGrant);
  });

  it('after close() every operation rejects with StoreUnavailableError', async () => {
    const store = await RedisOidcStore.connect(redis.url, { keyPrefix: uniqueKeyPrefix('closed') });
    await store.close();
    await expect(store.adapterFor('AccessToken').find(randomId())).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.adapterFor('AccessToken').upsert(randomId(), tokenPayload('x'), 60)).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.purgeExpired()).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('rejects model names that would clash with its key layout', async () => {
    const store = await openStore();
    expect(() => store.adapterFor('grant')).toThrow(TypeError);
    expect(() => store.adapterFor('Access:Token')).toThrow(TypeError);
    expect(() => store.adapterFor('')).toThrow(TypeError);
  });
});
