/**
 * The AuditLog contract against SqliteAuditLog (a database file opened twice) and MongoAuditLog
 * (FerretDB v1, or the MongoDB of MONGODB_URI; two connections to one database).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DatabaseSync } from 'node:sqlite';

import type { Connection } from 'mongoose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { SqliteAuditLog } from '../../src/consent/audit-log.ts';
import { MongoAuditLog } from '../../src/consent/mongo-audit-log.ts';
import { EXTERNAL_MONGODB_URI, SKIP_SERVICES, startFerretDb, uniqueDatabaseName } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { describeAuditLogContract } from './audit-log-contract.ts';
import { at, closeAll, connectMongo, dumpMongo } from './support.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'perseus-audit-'));
const sqliteHandles: DatabaseSync[] = [];
let files = 0;
afterAll(() => {
  for (const db of sqliteHandles) db.close();
  rmSync(dir, { recursive: true, force: true });
});

describeAuditLogContract('SqliteAuditLog', async () => {
  files += 1;
  const file = path.join(dir, `audit-${files}.db`);
  const [a, b] = [openSqliteDatabase(file), openSqliteDatabase(file)];
  sqliteHandles.push(a, b);
  return {
    logs: [new SqliteAuditLog(a), new SqliteAuditLog(b)],
    editActor: async (seq, actor) => {
      a.prepare('UPDATE audit_event SET actor = ? WHERE seq = ?').run(actor, seq);
    },
    remove: async (seq) => {
      a.prepare('DELETE FROM audit_event WHERE seq = ?').run(seq);
    },
  };
});

describe.skipIf(SKIP_SERVICES)(`MongoAuditLog (${EXTERNAL_MONGODB_URI ? 'MONGODB_URI' : 'FerretDB v1'})`, () => {
  let server: RunningService;
  const connections: Connection[] = [];

  async function openPair(): Promise<[Connection, Connection]> {
    const dbName = uniqueDatabaseName('audit');
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

  describeAuditLogContract('MongoAuditLog', async () => {
    const [a, b] = await openPair();
    const events = () => a.db!.collection<{ _id: number }>('audit_events');
    return {
      logs: [new MongoAuditLog(a), new MongoAuditLog(b)],
      editActor: async (seq, actor) => {
        await events().updateOne({ _id: seq }, { $set: { actor } });
      },
      remove: async (seq) => {
        await events().deleteOne({ _id: seq });
      },
    };
  });

  it('stores one document per event: numeric _id = seq, BSON date, hashes', async () => {
    const [connection] = await openPair();
    const log = new MongoAuditLog(connection);
    await log.append({ kind: 'decision', at: at(0), actor: 'usr_1', detail: { decision: 'allow' } });
    const docs = await connection.db!.collection('audit_events').find({}).toArray();
    expect(docs).toHaveLength(1);
    expect(docs[0]._id).toBe(1);
    expect(docs[0].at).toBeInstanceOf(Date);
    expect(docs[0].prevHash).toBe('0'.repeat(64));
    expect(JSON.parse(await dumpMongo(connection)).audit_events[0].detail).toBe('{"decision":"allow"}');
  });
});
