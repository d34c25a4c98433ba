/**
 * MongoOidcStore against a real MongoDB-protocol server: FerretDB v1 (SQLite backend) started by
 * test/support/services.ts, or the MongoDB of MONGODB_URI. The shared contract, then what only
 * this store shows: raw documents, indexes, expiry and purge, start-up failure, and a server that
 * dies and comes back.
 */
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import { errors } from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MongoOidcStore } from '../../src/adapters/mongo-oidc-store.ts';
import type { MongoConnectOptions } from '../../src/adapters/mongo-oidc-store.ts';
import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { StoreUnavailableError } from '../../src/adapters/types.ts';
import type { OidcStore } from '../../src/adapters/types.ts';
import { EXTERNAL_MONGODB_URI, SKIP_SERVICES, startFerretDb, uniqueDatabaseName } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { describeOidcAdapterContract, randomId, tokenPayload } from './oidc-adapter-contract.ts';

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (reason: unknown) => reason,
  );
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPing(store: OidcStore, timeoutMs = 20_000): Promise<void> {
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

describe.skipIf(SKIP_SERVICES)(`MongoOidcStore (${EXTERNAL_MONGODB_URI ? 'MONGODB_URI' : 'FerretDB v1'})`, () => {
  let server: RunningService;
  const stores: MongoOidcStore[] = [];

  async function openStore(options: MongoConnectOptions = {}): Promise<MongoOidcStore> {
    const store = await MongoOidcStore.connect(server.url, { dbName: uniqueDatabaseName('mongo'), connectTimeoutMs: 2000, ...options });
    stores.push(store);
    return store;
  }

  beforeAll(async () => {
    server = await startFerretDb();
  });

  afterAll(async () => {
    for (const store of stores) {
      if (server?.external) await store.connection.db?.dropDatabase().catch(() => undefined);
    }
    await Promise.allSettled(stores.map((store) => store.close()));
    await server?.stop();
  });

  describeOidcAdapterContract(EXTERNAL_MONGODB_URI ? 'mongo' : 'mongo (FerretDB)', async () => openStore());

  it(`picks the consume mode that is atomic on the server (${EXTERNAL_MONGODB_URI ? 'conditional update' : 'claim document on FerretDB'})`, async () => {
    const store = await openStore();
    expect(store.consumeMode).toBe(EXTERNAL_MONGODB_URI ? 'conditional-update' : 'claim');
  });

  it('stores string _ids that are hashes: no id appears in the raw documents', async () => {
    const store = await openStore();
    const db = store.connection.db;
    if (!db) throw new Error('not connected');
    const models = ['RefreshToken', 'Grant', 'AccessToken', 'AuthorizationCode'];
    const ids = new Map(models.map((model) => [model, randomId()]));
    for (const [model, id] of ids) {
      await store.adapterFor(model).upsert(id, tokenPayload(id, { kind: model, grantId: 'grant-raw' }), 600);
    }
    const refresh = ids.get('RefreshToken') ?? '';
    await store.adapterFor('RefreshToken').consume(refresh);
    const uid = randomId();
    await store.adapterFor('Session').upsert(randomId(), { kind: 'Session', uid }, 600);

    const raw: unknown[] = [];
    for (const { name } of await db.listCollections({}, { nameOnly: true }).toArray()) {
      raw.push(...(await db.collection(name).find({}).toArray()));
    }
    const text = JSON.stringify(raw);
    for (const [model, id] of ids) {
      expect(text).not.toContain(id);
      const doc = await db.collection(store.collectionName(model)).findOne({ _id: hashIdentifier(id) as never });
      expect(doc, model).not.toBeNull();
      expect(typeof doc?._id).toBe('string');
      expect(doc?.grantId).toBe('grant-raw');
      expect(doc?.expiresAt).toBeInstanceOf(Date);
      expect(JSON.parse(String(doc?.payload))).not.toHaveProperty('jti');
    }
    const refreshDoc = await db.collection(store.collectionName('RefreshToken')).findOne({ _id: hashIdentifier(refresh) as never });
    expect(refreshDoc?.consumedAt).toBeInstanceOf(Date);
    const session = await db.collection(store.collectionName('Session')).findOne({ uid: hashIdentifier(uid) });
    expect(session).not.toBeNull();

    for (const [model, id] of ids) {
      expect((await store.adapterFor(model).find(id))?.jti).toBe(id);
    }
  });

  it('ensureIndexes creates the grantId, uid, userCode and expiresAt indexes, idempotently', async () => {
    const store = await openStore({ models: ['Grant', 'RefreshToken'] });
    const db = store.connection.db;
    if (!db) throw new Error('not connected');

    const report = await store.ensureIndexes();
    expect(await store.ensureIndexes()).toEqual(report);

    expect(report.collections).toEqual(['oidc_Grant', 'oidc_RefreshToken', 'oidc_consume_claims']);
    // FerretDB v1 cannot make TTL indexes (purgeExpired does the work); MongoDB can.
    expect(report.ttlIndexes).toBe(Boolean(EXTERNAL_MONGODB_URI));
    for (const name of ['oidc_Grant', 'oidc_RefreshToken']) {
      const indexes = await db.collection(name).listIndexes().toArray();
      const keys = indexes.map((index) => Object.keys(index.key as object).join(','));
      expect(keys, name).toEqual(expect.arrayContaining(['_id', 'grantId', 'uid', 'userCode', 'expiresAt']));
    }
    const ttl = (await db.collection('oidc_Grant').listIndexes().toArray()).find((index) => index.name === 'expiresAt_ttl');
    if (report.ttlIndexes) expect(ttl?.expireAfterSeconds).toBe(300);
  });

  it('enforces expiry on read (clock tolerance included) and purges only after the grace period', async () => {
    let now = Date.now();
    const store = await openStore({ now: () => now, purgeGraceMs: 60_000, clockToleranceSeconds: 5 });
    const tokens = store.adapterFor('RefreshToken');
    const [short, long, forever] = [randomId(), randomId(), randomId()];
    await tokens.upsert(short, tokenPayload(short, { kind: 'RefreshToken' }), 10);
    await tokens.upsert(long, tokenPayload(long, { kind: 'RefreshToken' }), 3600);
    await tokens.upsert(forever, tokenPayload(forever, { kind: 'RefreshToken' }));
    const count = async (): Promise<number> => (await store.connection.db?.collection('oidc_RefreshToken').countDocuments({})) ?? -1;

    now += 14_000;
    expect(await tokens.find(short)).toBeDefined(); // 10 s + 5 s tolerance
    now += 1_000;
    expect(await tokens.find(short)).toBeUndefined();
    await expect(tokens.consume(short)).rejects.toBeInstanceOf(errors.InvalidGrant);
    expect(await tokens.find(long)).toBeDefined();
    expect(await store.purgeExpired()).toBe(0); // expired, but within the grace period
    expect(await count()).toBe(3);

    now += 60_000;
    expect(await store.purgeExpired()).toBe(1);
    expect(await count()).toBe(2);

    expect(await store.purgeExpired(new Date(now + 3600_000 + 60_000))).toBe(1);
    expect(await tokens.find(forever)).toBeDefined();
    expect(await count()).toBe(1);
  });

  it('an upsert over an expired entry starts afresh (its consumption does not carry over)', async () => {
    let now = Date.now();
    const store = await openStore({ now: () => now });
    const codes = store.adapterFor('RefreshToken');
    const id = randomId();
    await codes.upsert(id, tokenPayload(id, { kind: 'RefreshToken' }), 10);
    await codes.consume(id);
    now += 11_000;
    await codes.upsert(id, tokenPayload(id, { kind: 'RefreshToken' }), 10);
    expect((await codes.find(id))?.consumed).toBeUndefined();
    await codes.consume(id);
  });

  it('consume is atomic across connections: two stores race 25 consumes each, one wins', async () => {
    const dbName = uniqueDatabaseName('race');
    const [first, second] = [await openStore({ dbName }), await openStore({ dbName })];
    for (let round = 0; round < 5; round += 1) {
      const id = randomId();
      await first.adapterFor('RefreshToken').upsert(id, tokenPayload(id, { kind: 'RefreshToken' }), 60);
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => (i % 2 ? first : second).adapterFor('RefreshToken').consume(id)),
      );
      expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
      for (const result of results) {
        if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(errors.InvalidGrant);
      }
    }
  });

  it('start-up against a closed port fails within 5 s with a one-line StoreUnavailableError naming mongo', async () => {
    const port = await closedPort();
    const started = Date.now();
    const error = await rejectionOf(MongoOidcStore.connect(`mongodb://app:s3cret@127.0.0.1:${port}/perseus?authSource=admin`, { connectTimeoutMs: 2000 }));

    expect(Date.now() - started).toBeLessThan(5000);
    expect(error).toBeInstanceOf(StoreUnavailableError);
    expect((error as StoreUnavailableError).store).toBe('mongo');
    const { message } = error as Error;
    expect(message).toMatch(new RegExp(`^mongo at mongodb://127\\.0\\.0\\.1:${port}/perseus is unreachable`));
    expect(message).not.toContain('\n');
    expect(message).not.toContain('s3cret');
  });

  it.skipIf(Boolean(EXTERNAL_MONGODB_URI))(
    'server killed mid-way: operations and ping reject with StoreUnavailableError (no hang); after a restart the same store works again',
    async () => {
      const store = await openStore({ connectTimeoutMs: 1500 });
      const grants = store.adapterFor('Grant');
      const kept = randomId();
      await grants.upsert(kept, { jti: kept, kind: 'Grant', accountId: 'acc', clientId: 'c' }, 600);

      const inFlight = Promise.allSettled(Array.from({ length: 50 }, () => grants.find(kept)));
      await server.kill();
      for (const result of await inFlight) {
        if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(StoreUnavailableError);
      }

      const id = randomId();
      const operations: Array<[string, () => Promise<unknown>]> = [
        ['upsert', () => grants.upsert(id, { jti: id, kind: 'Grant' }, 600)],
        ['find', () => grants.find(kept)],
        ['findByUid', () => store.adapterFor('Session').findByUid(randomId())],
        ['consume', () => store.adapterFor('RefreshToken').consume(id)],
        ['destroy', () => grants.destroy(id)],
        ['revokeByGrantId', () => store.adapterFor('RefreshToken').revokeByGrantId('grant-1')],
        ['purgeExpired', () => store.purgeExpired()],
        ['ping', () => store.ping()],
      ];
      const all = Date.now();
      await Promise.all(
        operations.map(async ([name, operation]) => {
          const started = Date.now();
          const error = await rejectionOf(operation());
          expect(error, name).toBeInstanceOf(StoreUnavailableError);
          expect((error as StoreUnavailableError).store).toBe('mongo');
          expect(Date.now() - started, name).toBeLessThan(5000);
        }),
      );
      expect(Date.now() - all).toBeLessThan(6000);

      await server.restart();
      await waitForPing(store);

      // FerretDB keeps its data directory across the restart.
      expect((await grants.find(kept))?.accountId).toBe('acc');
      const token = randomId();
      await store.adapterFor('RefreshToken').upsert(token, tokenPayload(token, { kind: 'RefreshToken' }), 600);
      await store.adapterFor('RefreshToken').consume(token);
      await expect(store.adapterFor('RefreshToken').consume(token)).rejects.toBeInstanceOf(errors.InvalidGrant);
    },
  );

  it('after close() every operation rejects with StoreUnavailableError', async () => {
    const store = await MongoOidcStore.connect(server.url, { dbName: uniqueDatabaseName('closed'), connectTimeoutMs: 2000 });
    await store.close();
    await expect(store.adapterFor('Grant').find(randomId())).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.ensureIndexes()).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.purgeExpired()).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('rejects model names that cannot be collection names', async () => {
    const store = await openStore();
    expect(() => store.adapterFor('consume_claims')).toThrow(TypeError);
    expect(() => store.adapterFor('a.b')).toThrow(TypeError);
    expect(() => store.adapterFor('')).toThrow(TypeError);
  });
});
