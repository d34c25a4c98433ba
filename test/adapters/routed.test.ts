/**
 * RoutedOidcStore and openOidcStore against real servers: the production pair (MongoDB-protocol
 * server for durable models, redis-server for short-lived ones) passes the shared contract, each
 * model lands in its store, and start-up fails fast naming the store that is down.
 */
import { createServer } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MongoOidcStore } from '../../src/adapters/mongo-oidc-store.ts';
import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { ensureOidcIndexes, openOidcStore } from '../../src/adapters/open-store.ts';
import { RedisOidcStore } from '../../src/adapters/redis-oidc-store.ts';
import {
  modelsRoutedTo,
  OIDC_MODEL_NAMES,
  PRODUCTION_ROUTING,
  productionRoutedStore,
  RoutedOidcStore,
} from '../../src/adapters/routed-oidc-store.ts';
import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { SqliteOidcStore } from '../../src/adapters/sqlite-oidc-store.ts';
import { StoreUnavailableError } from '../../src/adapters/types.ts';
import {
  EXTERNAL_MONGODB_URI,
  mongoUriWithDatabase,
  SKIP_SERVICES,
  startFerretDb,
  startRedis,
  uniqueDatabaseName,
  uniqueKeyPrefix,
} from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { describeOidcAdapterContract, randomId, tokenPayload } from './oidc-adapter-contract.ts';

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('PRODUCTION_ROUTING', () => {
  it('routes every oidc-provider model, durable ones to mongo and short-lived ones to redis', () => {
    expect(Object.keys(PRODUCTION_ROUTING.models).sort()).toEqual([...OIDC_MODEL_NAMES].sort());
    expect(modelsRoutedTo('mongo').sort()).toEqual(['Client', 'Grant', 'InitialAccessToken', 'RefreshToken', 'RegistrationAccessToken']);
    expect(modelsRoutedTo('redis')).toEqual(
      expect.arrayContaining(['Session', 'Interaction', 'PushedAuthorizationRequest', 'AuthorizationCode', 'ReplayDetection', 'AccessToken']),
    );
    expect(PRODUCTION_ROUTING.default).toBe('mongo');
  });

  it('RoutedOidcStore: one store per model, a default for the rest, each store closed once', async () => {
    const a = new SqliteOidcStore(openSqliteDatabase(':memory:'));
    const b = new SqliteOidcStore(openSqliteDatabase(':memory:'));
    const routed = new RoutedOidcStore({ routes: { AccessToken: a, Session: a }, default: b, name: 'pair' });
    expect(routed.name).toBe('pair');
    expect(routed.stores).toEqual([a, b]);
    expect(routed.storeFor('AccessToken')).toBe(a);
    expect(routed.storeFor('Grant')).toBe(b);
    expect(routed.adapterFor('Session')).toBe(a.adapterFor('Session'));

    const id = randomId();
    await routed.adapterFor('Grant').upsert(id, { jti: id, kind: 'Grant' }, 60);
    expect(await b.adapterFor('Grant').find(id)).toBeDefined();
    expect(await a.adapterFor('Grant').find(id)).toBeUndefined();

    await a.close();
    const error = await routed.ping().then(() => undefined, (reason: unknown) => reason);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    await routed.close();
    await expect(b.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
  });
});

describe.skipIf(SKIP_SERVICES)('the production pair (MongoDB-protocol server + redis-server)', () => {
  let redis: RunningService;
  let mongo: RunningService;
  const toClose: Array<{ close(): Promise<void> }> = [];

  async function openPair(): Promise<{ routed: RoutedOidcStore; mongoStore: MongoOidcStore; redisStore: RedisOidcStore }> {
    const [mongoStore, redisStore] = await Promise.all([
      MongoOidcStore.connect(mongo.url, { dbName: uniqueDatabaseName('routed'), models: modelsRoutedTo('mongo'), connectTimeoutMs: 2000 }),
      RedisOidcStore.connect(redis.url, { keyPrefix: uniqueKeyPrefix('routed'), connectTimeoutMs: 2000 }),
    ]);
    const routed = productionRoutedStore({ mongo: mongoStore, redis: redisStore });
    toClose.push(routed);
    return { routed, mongoStore, redisStore };
  }

  beforeAll(async () => {
    [redis, mongo] = await Promise.all([startRedis(), startFerretDb()]);
  });

  afterAll(async () => {
    await Promise.allSettled(toClose.map((store) => store.close()));
    await Promise.allSettled([redis?.stop(), mongo?.stop()]);
  });

  describeOidcAdapterContract('routed production pair (mongo + redis)', async () => (await openPair()).routed);

  it('puts each model in its store; revokeByGrantId of a model goes to that store', async () => {
    const { routed, mongoStore, redisStore } = await openPair();
    expect(routed.name).toBe('mongo+redis');
    const [access, refresh, grantId] = [randomId(), randomId(), randomId()];
    await routed.adapterFor('AccessToken').upsert(access, tokenPayload(access, { grantId }), 600);
    await routed.adapterFor('RefreshToken').upsert(refresh, tokenPayload(refresh, { kind: 'RefreshToken', grantId }), 600);
    await routed.adapterFor('Grant').upsert(grantId, { jti: grantId, kind: 'Grant', accountId: 'a', clientId: 'c' }, 600);
    await routed.adapterFor('SomeFutureModel').upsert('x', { kind: 'SomeFutureModel' }, 600);

    expect(await redisStore.adapterFor('AccessToken').find(access)).toBeDefined();
    expect(await mongoStore.adapterFor('AccessToken').find(access)).toBeUndefined();
    expect(await mongoStore.adapterFor('RefreshToken').find(refresh)).toBeDefined();
    expect(await redisStore.adapterFor('RefreshToken').find(refresh)).toBeUndefined();
    expect(await mongoStore.adapterFor('Grant').find(grantId)).toBeDefined();
    expect(await mongoStore.adapterFor('SomeFutureModel').find('x')).toBeDefined(); // the default: mongo
    const db = mongoStore.connection.db;
    expect(await db?.collection('oidc_RefreshToken').countDocuments({ _id: hashIdentifier(refresh) as never })).toBe(1);

    await routed.adapterFor('AccessToken').revokeByGrantId(grantId);
    expect(await routed.adapterFor('AccessToken').find(access)).toBeUndefined();
    expect(await routed.adapterFor('RefreshToken').find(refresh)).toBeDefined();
    await routed.adapterFor('RefreshToken').revokeByGrantId(grantId);
    expect(await routed.adapterFor('RefreshToken').find(refresh)).toBeUndefined();
  });

  it('ping names the store that is down', async () => {
    const { routed, redisStore } = await openPair();
    await routed.ping();
    await redisStore.close();
    const error = await routed.ping().then(() => undefined, (reason: unknown) => reason);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as StoreUnavailableError).store).toBe('redis');
  });

  it("openOidcStore({ storage: 'mongo' }) opens the routed pair; ensureOidcIndexes indexes the mongo models", async () => {
    const store = await openOidcStore({
      storage: 'mongo',
      mongodbUri: mongoUriWithDatabase(mongo.url, uniqueDatabaseName('open')),
      redisUrl: redis.url,
      connectTimeoutMs: 2000,
    });
    toClose.push(store);
    expect(store).toBeInstanceOf(RoutedOidcStore);
    const routed = store as RoutedOidcStore;
    expect(routed.storeFor('Grant')).toBeInstanceOf(MongoOidcStore);
    expect(routed.storeFor('AccessToken')).toBeInstanceOf(RedisOidcStore);
    await store.ping();

    const reports = await ensureOidcIndexes(store);
    expect(reports).toHaveLength(1);
    expect(reports[0]?.collections).toEqual([...modelsRoutedTo('mongo').map((model) => `oidc_${model}`), 'oidc_consume_claims']);
    expect(reports[0]?.ttlIndexes).toBe(Boolean(EXTERNAL_MONGODB_URI));
  });

  it('openOidcStore uses the database the URI names, else `perseus`', async () => {
    const named = uniqueDatabaseName('named');
    for (const [uri, expected] of [
      [mongoUriWithDatabase(mongo.url, named), named],
      [mongoUriWithDatabase(mongo.url, ''), 'perseus'],
    ] as const) {
      const store = await openOidcStore({ storage: 'mongo', mongodbUri: uri, redisUrl: redis.url, connectTimeoutMs: 2000 });
      try {
        const mongoStore = (store as RoutedOidcStore).storeFor('Grant') as MongoOidcStore;
        expect(mongoStore.connection.db?.databaseName).toBe(expected);
      } finally {
        await store.close();
      }
    }
  });

  it('openOidcStore fails within 5 s with a one-line StoreUnavailableError naming the store that is down', async () => {
    const port = await closedPort();
    for (const [down, options] of [
      ['redis', { storage: 'mongo', mongodbUri: mongoUriWithDatabase(mongo.url, uniqueDatabaseName('down')), redisUrl: `redis://127.0.0.1:${port}` }],
      ['mongo', { storage: 'mongo', mongodbUri: `mongodb://127.0.0.1:${port}/perseus`, redisUrl: redis.url }],
    ] as const) {
      const started = Date.now();
      const error = await openOidcStore({ ...options, connectTimeoutMs: 2000 }).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(Date.now() - started, down).toBeLessThan(5000);
      expect(error, down).toBeInstanceOf(StoreUnavailableError);
      expect((error as StoreUnavailableError).store).toBe(down);
      const url = down === 'redis' ? `redis://127.0.0.1:${port}` : `mongodb://127.0.0.1:${port}/perseus`;
      expect((error as Error).message.startsWith(`${down} at ${url} is unreachable`), (error as Error).message).toBe(true);
      expect((error as Error).message).not.toContain('\n');
    }
  });
});

describe('RoutedOidcStore and findWithGrant', () => {
  it('keeps a token adapter’s findWithGrant only where the Grant model lives in the same store', async () => {
    const [tokensStore, grantsStore] = [new SqliteOidcStore(openSqliteDatabase(':memory:')), new SqliteOidcStore(openSqliteDatabase(':memory:'))];
    try {
      const together = new RoutedOidcStore({ routes: {}, default: tokensStore });
      const apart = new RoutedOidcStore({ routes: { Grant: grantsStore }, default: tokensStore });
      const [access, grantId] = [randomId(), randomId()];
      await apart.adapterFor('Grant').upsert(grantId, { jti: grantId, kind: 'Grant' }, 600);
      await apart.adapterFor('AccessToken').upsert(access, tokenPayload(access, { grantId }), 600);
      expect(together.adapterFor('AccessToken').findWithGrant).toBeTypeOf('function');
      // The token's store has no such grant: a join there would call a live grant missing.
      expect(apart.adapterFor('AccessToken').findWithGrant).toBeUndefined();
      // Everything else still reaches the token's store.
      expect(await apart.adapterFor('AccessToken').find(access)).toMatchObject({ grantId });
      await apart.adapterFor('AccessToken').revokeByGrantId(grantId);
      expect(await tokensStore.adapterFor('AccessToken').find(access)).toBeUndefined();
    } finally {
      await tokensStore.close();
      await grantsStore.close();
    }
  });
});

describe("openOidcStore({ storage: 'sqlite' })", () => {
  it('wraps the given handle without taking ownership of it', async () => {
    const db = openSqliteDatabase(':memory:');
    const store = await openOidcStore({ storage: 'sqlite', db });
    expect(store).toBeInstanceOf(SqliteOidcStore);
    const id = randomId();
    await store.adapterFor('AccessToken').upsert(id, tokenPayload(id), 60);
    expect(await store.adapterFor('AccessToken').find(id)).toBeDefined();
    await store.close();
    expect(db.isOpen).toBe(true);
    expect(await ensureOidcIndexes(store)).toEqual([]);
    db.close();
  });
});
