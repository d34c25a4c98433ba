/**
 * The OutboxStore contract against SqliteOutboxStore (':memory:') and MongoOutboxStore
 * (FerretDB v1, or the MongoDB of MONGODB_URI; two connections to one database).
 */
import type { DatabaseSync } from 'node:sqlite';

import type { Connection } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { MongoOutboxStore, outboxMessageId } from '../../src/consent/mongo-outbox.ts';
import { SqliteOutboxStore } from '../../src/consent/outbox.ts';
import { EXTERNAL_MONGODB_URI, SKIP_SERVICES, startFerretDb, uniqueDatabaseName } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { describeOutboxContract } from './outbox-contract.ts';
import { at, closeAll, connectMongo } from './support.ts';

const sqliteHandles: DatabaseSync[] = [];
afterAll(() => {
  for (const db of sqliteHandles) db.close();
});

describeOutboxContract('SqliteOutboxStore', async () => {
  const db = openSqliteDatabase(':memory:');
  sqliteHandles.push(db);
  return { stores: [new SqliteOutboxStore(db), new SqliteOutboxStore(db)] };
}, { exclusiveLeases: true });

describe.skipIf(SKIP_SERVICES)(`MongoOutboxStore (${EXTERNAL_MONGODB_URI ? 'MONGODB_URI' : 'FerretDB v1'})`, () => {
  let server: RunningService;
  const connections: Connection[] = [];

  async function openPair(): Promise<[Connection, Connection]> {
    const dbName = uniqueDatabaseName('outbox');
    const pair: [Connection, Connection] = [await connectMongo(server.url, dbName), await connectMongo(server.url, dbName)];
    connections.push(...pair);
    return pair;
  }

  beforeAll(async () => {
    server = await startFerretDb();
  });

  afterAll(async () => {
    await closeAll(connections, Boolean(server?.external));
    await server?.stop();
  });

  describeOutboxContract('MongoOutboxStore', async () => {
    const [a, b] = await openPair();
    return { stores: [new MongoOutboxStore(a), new MongoOutboxStore(b)] };
  }, { exclusiveLeases: Boolean(EXTERNAL_MONGODB_URI) });

  it('uses an id derived from the idempotency key as _id, with BSON dates and the body as JSON text', async () => {
    const [connection] = await openPair();
    const outbox = new MongoOutboxStore(connection);
    await outbox.enqueue({ kind: 'withdrawal', target: 'https://c.example/m', body: { a: 1 }, idempotencyKey: 'withdrawal:k' }, at(0));
    const docs = await connection.db!.collection('outbox').find({}).toArray();
    expect(docs).toHaveLength(1);
    expect(docs[0]._id).toBe(outboxMessageId('withdrawal:k'));
    expect(docs[0]._id).toMatch(/^msg_[\w-]{16}$/);
    expect(docs[0].createdAt).toBeInstanceOf(Date);
    expect(docs[0].body).toBe('{"a":1}');
    expect((await outbox.all())[0].id).toBe(docs[0]._id);
  });
});
