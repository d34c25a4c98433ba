/**
 * The SmeSessionStore contract against SqliteSmeSessionStore (':memory:') and
 * RedisSmeSessionStore (a real redis-server), then the Redis layout: hashed keys and TTLs.
 */
import type { DatabaseSync } from 'node:sqlite';

import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { RedisSmeSessionStore } from '../../src/consent/redis-sme-sessions.ts';
import { SqliteSmeSessionStore } from '../../src/consent/sme-sessions.ts';
import { SKIP_SERVICES, startRedis, uniqueKeyPrefix } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { describeSmeSessionsContract } from './sme-sessions-contract.ts';
import { connectRedis } from './support.ts';

const sqliteHandles: DatabaseSync[] = [];
afterAll(() => {
  for (const db of sqliteHandles) db.close();
});

describeSmeSessionsContract('SqliteSmeSessionStore', async () => {
  const db = openSqliteDatabase(':memory:');
  sqliteHandles.push(db);
  return { store: new SqliteSmeSessionStore(db), dump: async () => JSON.stringify(db.prepare('SELECT * FROM sme_session').all()) };
});

async function dumpRedis(client: Redis, prefix: string): Promise<string> {
  const keys = await client.keys(`${prefix}*`);
  return JSON.stringify(await Promise.all(keys.map(async (key) => [key, await client.get(key)])));
}

describe.skipIf(SKIP_SERVICES)('RedisSmeSessionStore (real redis-server)', () => {
  let redis: RunningService;
  let client: Redis;

  beforeAll(async () => {
    redis = await startRedis();
    client = await connectRedis(redis.url);
  });

  afterAll(async () => {
    client?.disconnect();
    await redis?.stop();
  });

  describeSmeSessionsContract('RedisSmeSessionStore', async () => {
    const keyPrefix = uniqueKeyPrefix('sme-session');
    return { store: new RedisSmeSessionStore(client, { keyPrefix }), dump: () => dumpRedis(client, keyPrefix) };
  });

  it('keys each session by the hash of its id, under the prefix, expiring with the session', async () => {
    const keyPrefix = uniqueKeyPrefix('sme-session');
    const store = new RedisSmeSessionStore(client, { keyPrefix });
    const id = await store.create({ userId: 'usr_1', organisationId: 'org_1', email: 'a@example.org', expiresAt: new Date(Date.now() + 30 * 60_000) });
    const key = `${keyPrefix}${hashIdentifier(id)}`;
    expect(store.keyOf(id)).toBe(key);
    expect(await client.keys(`${keyPrefix}*`)).toEqual([key]);
    const ttl = await client.pttl(key);
    expect(ttl).toBeGreaterThan(29 * 60_000);
    expect(ttl).toBeLessThanOrEqual(30 * 60_000);
    await store.destroy(id);
    expect(await client.exists(key)).toBe(0);
  });

  it('takes the TTL from its clock option', async () => {
    const keyPrefix = uniqueKeyPrefix('sme-session');
    const fakeNow = Date.now() - 10 * 60_000;
    const store = new RedisSmeSessionStore(client, { keyPrefix, now: () => fakeNow });
    const expiresAt = new Date(fakeNow + 15 * 60_000);
    const id = await store.create({ userId: 'usr_1', organisationId: 'org_1', email: 'a@example.org', expiresAt });
    const ttl = await client.pttl(store.keyOf(id));
    expect(ttl).toBeGreaterThan(14 * 60_000);
    expect(ttl).toBeLessThanOrEqual(15 * 60_000);
    expect((await store.find(id, new Date(fakeNow)))?.expiresAt).toEqual(expiresAt);
  });
});
