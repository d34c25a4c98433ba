/**
 * A store whose server is down rejects with StoreUnavailableError, quickly, and works again once
 * the server is back: every MongoDB store of the consent domain (FerretDB killed and restarted)
 * and the Redis session store (redis-server killed and restarted).
 */
import { randomBytes } from 'node:crypto';

import mongoose from 'mongoose';
import type { Connection } from 'mongoose';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { StoreUnavailableError } from '../../src/adapters/types.ts';
import { ensureDomainIndexes } from '../../src/consent/mongo-domain-indexes.ts';
import { MongoAuditLog } from '../../src/consent/mongo-audit-log.ts';
import { MongoOutboxStore } from '../../src/consent/mongo-outbox.ts';
import { MongoPermissionStore } from '../../src/consent/mongo-permission-store.ts';
import { MongoSmeAccounts } from '../../src/consent/mongo-sme-accounts.ts';
import { RedisSmeSessionStore } from '../../src/consent/redis-sme-sessions.ts';
import { EXTERNAL_MONGODB_URI, SKIP_SERVICES, startFerretDb, startRedis, uniqueDatabaseName, uniqueKeyPrefix } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { newGrant } from './permission-store-contract.ts';
import { at, closeAll, connectMongo, connectRedis } from './support.ts';

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => new Error('expected a rejection'), (reason: unknown) => reason);
}

/** Every operation kind of every MongoDB store, as thunks. */
function mongoOperations(connection: Connection): Record<string, () => Promise<unknown>> {
  const permissions = new MongoPermissionStore(connection);
  const audit = new MongoAuditLog(connection);
  const outbox = new MongoOutboxStore(connection);
  const accounts = new MongoSmeAccounts(connection, randomBytes(32));
  return {
    'permissions.recordGrant': () => permissions.recordGrant(newGrant()),
    'permissions.withdraw': () => permissions.withdraw('perm_x', at(0), 'sme', 'u', 'r'),
    'permissions.byGrantId': () => permissions.byGrantId('grant_x'),
    'permissions.recordExpiries': () => permissions.recordExpiries(at(0)),
    'audit.append': () => audit.append({ kind: 'sign_in', at: at(0), actor: 'usr_1' }),
    'audit.verify': () => audit.verify(),
    'outbox.enqueue': () => outbox.enqueue({ kind: 'withdrawal', target: 'https://c.example/m', body: {}, idempotencyKey: randomBytes(8).toString('hex') }, at(0)),
    'outbox.claimDue': () => outbox.claimDue(at(0), 1000, 10),
    'accounts.authenticate': () => accounts.authenticate('a@example.org', 'a long password'),
    'accounts.accountFor': () => accounts.accountFor('org_1', 'https://c.example'),
    ensureDomainIndexes: () => ensureDomainIndexes(connection),
  };
}

describe.skipIf(SKIP_SERVICES)('consent stores when their server is down', () => {
  let ferret: RunningService;
  let redis: RunningService;
  let connection: Connection;
  let client: Redis;

  beforeAll(async () => {
    [ferret, redis] = await Promise.all([startFerretDb(), startRedis()]);
    connection = await connectMongo(ferret.url, uniqueDatabaseName('unavailable'), 1000);
    client = await connectRedis(redis.url);
  });

  afterAll(async () => {
    client?.disconnect();
    await closeAll(connection ? [connection] : [], Boolean(ferret?.external));
    await Promise.allSettled([ferret?.stop(), redis?.stop()]);
  });

  it('a connection that is not open rejects at once with StoreUnavailableError', async () => {
    const never = mongoose.createConnection();
    for (const [name, operation] of Object.entries(mongoOperations(never))) {
      expect(await rejectionOf(operation()), name).toBeInstanceOf(StoreUnavailableError);
    }
  });

  it.skipIf(Boolean(EXTERNAL_MONGODB_URI))('MongoDB stores: StoreUnavailableError within seconds while FerretDB is down, working again after', async () => {
    const operations = mongoOperations(connection);
    for (const [name, operation] of Object.entries(operations)) await expect(operation(), name).resolves.not.toThrow();

    await ferret.kill();
    const started = Date.now();
    const outcomes = await Promise.all(Object.entries(operations).map(async ([name, operation]) => [name, await rejectionOf(operation())] as const));
    for (const [name, reason] of outcomes) {
      expect(reason, name).toBeInstanceOf(StoreUnavailableError);
      expect((reason as StoreUnavailableError).store).toBe('mongo');
    }
    expect(Date.now() - started).toBeLessThan(8000);

    await ferret.restart();
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await operations['permissions.byGrantId']();
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    for (const [name, operation] of Object.entries(operations)) await expect(operation(), name).resolves.not.toThrow();
  }, 45_000);

  it('RedisSmeSessionStore: StoreUnavailableError at once while Redis is down, working again after', async () => {
    const store = new RedisSmeSessionStore(client, { keyPrefix: uniqueKeyPrefix('down') });
    const id = await store.create({ userId: 'u', organisationId: 'o', email: 'e@example.org', expiresAt: new Date(Date.now() + 600_000) });
    await redis.kill();
    const started = Date.now();
    for (const operation of [
      () => store.find(id, new Date()),
      () => store.destroy(id),
      () => store.create({ userId: 'u', organisationId: 'o', email: 'e@example.org', expiresAt: new Date(Date.now() + 600_000) }),
    ]) {
      const reason = await rejectionOf(operation());
      expect(reason).toBeInstanceOf(StoreUnavailableError);
      expect((reason as StoreUnavailableError).store).toBe('redis');
    }
    expect(Date.now() - started).toBeLessThan(5000);
    await redis.restart();
    const deadline = Date.now() + 15_000;
    while (client.status !== 'ready' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    // No persistence: the session is gone with the server, but the store works again.
    expect(await store.find(id, new Date())).toBeUndefined();
    const again = await store.create({ userId: 'u', organisationId: 'o', email: 'e@example.org', expiresAt: new Date(Date.now() + 600_000) });
    expect((await store.find(again, new Date()))?.userId).toBe('u');
  }, 30_000);
});
