/**
 * The SmeAccountStore contract against SmeAccounts (SQLite ':memory:') and MongoSmeAccounts
 * (FerretDB v1, or the MongoDB of MONGODB_URI).
 */
import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

import type { Connection } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { MongoSmeAccounts } from '../../src/consent/mongo-sme-accounts.ts';
import { SmeAccounts } from '../../src/consent/sme-accounts.ts';
import { EXTERNAL_MONGODB_URI, SKIP_SERVICES, startFerretDb, uniqueDatabaseName } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { describeSmeAccountsContract } from './sme-accounts-contract.ts';
import { closeAll, connectMongo, dumpMongo } from './support.ts';

const sqliteHandles: DatabaseSync[] = [];
afterAll(() => {
  for (const db of sqliteHandles) db.close();
});

describeSmeAccountsContract('SmeAccounts (SQLite)', async () => {
  const db = openSqliteDatabase(':memory:');
  sqliteHandles.push(db);
  return {
    store: new SmeAccounts(db, randomBytes(32)),
    withSecret: (secret) => new SmeAccounts(db, secret),
    dump: async () => {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>;
      return JSON.stringify(tables.map(({ name }) => db.prepare(`SELECT * FROM "${name}"`).all()));
    },
  };
});

describe.skipIf(SKIP_SERVICES)(`MongoSmeAccounts (${EXTERNAL_MONGODB_URI ? 'MONGODB_URI' : 'FerretDB v1'})`, () => {
  let server: RunningService;
  const connections: Connection[] = [];

  beforeAll(async () => {
    server = await startFerretDb();
  });

  afterAll(async () => {
    await closeAll(connections, Boolean(server?.external));
    await server?.stop();
  });

  describeSmeAccountsContract('MongoSmeAccounts', async () => {
    const dbName = uniqueDatabaseName('sme');
    const [a, b] = [await connectMongo(server.url, dbName), await connectMongo(server.url, dbName)];
    connections.push(a, b);
    return {
      store: new MongoSmeAccounts(a, randomBytes(32)),
      withSecret: (secret) => new MongoSmeAccounts(b, secret),
      dump: () => dumpMongo(a),
    };
  });

  it('keeps the user under the lower-cased email with only the scrypt hash, dates as BSON dates', async () => {
    const connection = await connectMongo(server.url, uniqueDatabaseName('sme'));
    connections.push(connection);
    const accounts = new MongoSmeAccounts(connection, randomBytes(32));
    const { user, organisation } = await accounts.addSme({ email: 'Dana@Example.org', password: 'a long enough password', organisation: 'Dana Ltd', meters: ['1012345678901:SW1A'] });
    const db = connection.db!;
    const doc = await db.collection('sme_users').findOne({ _id: 'dana@example.org' as never });
    expect(doc).toMatchObject({ id: user.id, organisationId: organisation.id });
    expect(String(doc?.passwordHash)).toMatch(/^scrypt\$/);
    expect(doc?.createdAt).toBeInstanceOf(Date);
    expect((await db.collection('sme_organisations').findOne({ _id: organisation.id as never }))?.createdAt).toBeInstanceOf(Date);
    expect(await db.collection('sme_meters').countDocuments({ organisationId: organisation.id })).toBe(1);
  });
});
