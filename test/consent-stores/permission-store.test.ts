/**
 * The PermissionStore contract against SqlitePermissionStore (':memory:') and
 * MongoPermissionStore (FerretDB v1, or the MongoDB of MONGODB_URI), then what only the MongoDB
 * layout shows: raw documents (no refresh token in clear, BSON dates, no stored status),
 * recovery from a crashed grant, and the indexes of db:init.
 */
import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

import type { Connection } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { claimKey } from '../../src/consent/mongo-common.ts';
import { ensureDomainIndexes } from '../../src/consent/mongo-domain-indexes.ts';
import { MongoPermissionStore } from '../../src/consent/mongo-permission-store.ts';
import { SqlitePermissionStore } from '../../src/consent/sqlite-permission-store.ts';
import { TokenSeal } from '../../src/consent/token-seal.ts';
import { EXTERNAL_MONGODB_URI, SKIP_SERVICES, startFerretDb, uniqueDatabaseName } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { describePermissionStoreContract, newGrant } from './permission-store-contract.ts';
import { at, closeAll, connectMongo, DAY, dumpMongo, HOUR } from './support.ts';

const sqliteHandles: DatabaseSync[] = [];
afterAll(() => {
  for (const db of sqliteHandles) db.close();
});

describePermissionStoreContract('SqlitePermissionStore', async () => {
  const db = openSqliteDatabase(':memory:');
  sqliteHandles.push(db);
  return { stores: [new SqlitePermissionStore(db), new SqlitePermissionStore(db)] };
});

describe.skipIf(SKIP_SERVICES)(`MongoPermissionStore (${EXTERNAL_MONGODB_URI ? 'MONGODB_URI' : 'FerretDB v1'})`, () => {
  let server: RunningService;
  const connections: Connection[] = [];

  async function openPair(): Promise<{ connections: [Connection, Connection]; stores: [MongoPermissionStore, MongoPermissionStore] }> {
    const dbName = uniqueDatabaseName('permissions');
    const pair: [Connection, Connection] = [await connectMongo(server.url, dbName), await connectMongo(server.url, dbName)];
    connections.push(...pair);
    return { connections: pair, stores: [new MongoPermissionStore(pair[0]), new MongoPermissionStore(pair[1])] };
  }

  beforeAll(async () => {
    server = await startFerretDb();
  });

  afterAll(async () => {
    await closeAll(connections, Boolean(server?.external));
    await server?.stop();
  });

  describePermissionStoreContract('MongoPermissionStore', async () => ({ stores: (await openPair()).stores }));

  it('stores no refresh token in clear (hash and sealed value only), dates as BSON dates, and no status', async () => {
    const { connections: [connection], stores: [store] } = await openPair();
    const seal = new TokenSeal(randomBytes(32));
    const token = randomBytes(32).toString('base64url');
    const g = newGrant();
    const p = (await store.recordGrant(g)).permission;
    await store.linkRefreshToken({
      tokenHash: hashIdentifier(token), grantId: g.grantId, clientId: g.clientId, sealedToken: seal.seal(token), issuedAt: at(0), expiresAt: at(DAY),
    });
    await store.recordTokenIssue(g.grantId, at(HOUR), at(2 * HOUR), 'token_issued', g.clientId);
    await store.withdraw(p.id, at(2 * HOUR), 'sme', g.userId, 'r');
    await store.recordExpiries(at(400 * DAY));

    const dump = await dumpMongo(connection);
    expect(dump).not.toContain(token);
    expect(dump).not.toMatch(/"status"/);
    const db = connection.db!;
    const link = await db.collection('refresh_token_links').findOne({ _id: hashIdentifier(token) as never });
    expect(link).toMatchObject({ grantId: g.grantId, clientId: g.clientId });
    expect(seal.open(String(link?.sealedToken))).toBe(token);
    expect(link?.issuedAt).toBeInstanceOf(Date);
    const doc = await db.collection('permissions').findOne({ _id: p.id as never });
    expect(doc?.firstGranted).toBeInstanceOf(Date);
    expect(doc?.tokenIssuedAt).toBeInstanceOf(Date);
    const events = await db.collection('permission_events').find({ permissionId: p.id }).toArray();
    expect(events.map((e) => e.kind).sort()).toEqual(['granted', 'revoked']);
    const tokenEvents = await db.collection('permission_token_events').find({ permissionId: p.id }).toArray();
    expect(tokenEvents.map((e) => e.kind)).toEqual(['token_issued']);
    for (const e of [...events, ...tokenEvents]) expect(e.at).toBeInstanceOf(Date);
    expect(events.find((e) => e.kind === 'revoked')?.state?.revoked).toBeInstanceOf(Date);
    // The hot-path lookups: grant -> record and the head hint, both by `_id`.
    expect(await db.collection('permission_grants').findOne({ _id: g.grantId as never })).toMatchObject({ permissionId: p.id });
    expect(await db.collection('permission_heads').findOne({ _id: p.id as never })).toMatchObject({ seq: 2, state: { revoked: expect.any(Date) } });
  });

  it('completes a grant that crashed after claiming the record (claim without document, document without events)', async () => {
    const { connections: [connection], stores: [store, other] } = await openPair();
    const db = connection.db!;
    // A crash right after the claim: the next grant creates the record of that claim.
    const g = newGrant();
    const key = claimKey(g.organisationId, g.clientId, g.license);
    await db.collection('permission_current').insertOne({ _id: `${key}#1` as never, key, generation: 1, permissionId: 'perm_crashed', claimedAt: at(0) });
    expect(await store.byOrganisation(g.organisationId)).toEqual([]);
    const outcome = await other.recordGrant(g);
    expect(outcome).toMatchObject({ kind: 'granted', permission: { id: 'perm_crashed', grantId: g.grantId } });

    // A crash after the document, before its first event: invisible, then completed.
    const h = newGrant();
    const hKey = claimKey(h.organisationId, h.clientId, h.license);
    await db.collection('permission_current').insertOne({ _id: `${hKey}#1` as never, key: hKey, generation: 1, permissionId: 'perm_half', claimedAt: at(0) });
    await db.collection('permissions').insertOne({
      _id: 'perm_half' as never, key: hKey, generation: 1, organisationId: h.organisationId, clientId: h.clientId, license: h.license,
      account: h.account, evidenceId: 'e'.repeat(32), firstGranted: at(0), tokenIssuedAt: null, tokenExpires: null,
    });
    expect(await store.byId('perm_half')).toBeUndefined();
    expect(await store.byOrganisation(h.organisationId)).toEqual([]);
    const completed = await store.recordGrant(h);
    expect(completed).toMatchObject({ kind: 'granted', permission: { id: 'perm_half', grantId: h.grantId, evidenceId: 'e'.repeat(32) } });
    expect((await store.history('perm_half')).map((e) => e.kind)).toEqual(['granted']);
  });

  it('ensureDomainIndexes creates the indexes the stores query by, idempotently', async () => {
    const { connections: [connection] } = await openPair();
    const report = await ensureDomainIndexes(connection);
    expect(await ensureDomainIndexes(connection)).toEqual(report);
    expect(report.indexes).toEqual(expect.arrayContaining([
      'permission_current.key_generation', 'permission_events.permissionId_seq', 'permission_events.grantId', 'permission_events.expiryDue',
      'refresh_token_links.grantId', 'permissions.organisationId', 'permissions.evidenceId', 'evidence_links.evidenceId',
    ]));
    const indexes = await connection.db!.collection('refresh_token_links').listIndexes().toArray();
    expect(indexes.map((index) => index.name)).toContain('grantId');
    // The store works the same with its indexes.
    const store = new MongoPermissionStore(connection);
    const g = newGrant();
    await store.recordGrant(g);
    expect((await store.recordGrant({ ...g, grantId: 'grant_2' })).kind).toBe('renewed');
  });
});
