import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';

import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { openSqliteDatabase, writeTransaction } from '../../src/adapters/sqlite-database.ts';
import { GroupCommit } from '../../src/adapters/sqlite-group-commit.ts';
import { SqliteOidcStore } from '../../src/adapters/sqlite-oidc-store.ts';
import { StoreUnavailableError, type OidcAdapter } from '../../src/adapters/types.ts';
import { randomId, tokenPayload } from './oidc-adapter-contract.ts';

const workDir = mkdtempSync(path.join(tmpdir(), 'perseus-group-commit-'));
let fileCounter = 0;
const opened: DatabaseSync[] = [];
afterEach(() => {
  for (const db of opened.splice(0)) if (db.isOpen) db.close();
});
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

function newFile(): string {
  return path.join(workDir, `g-${++fileCounter}`, 'perseus.sqlite');
}

function open(file: string): DatabaseSync {
  const db = openSqliteDatabase(file);
  opened.push(db);
  return db;
}

/** A second connection to the same file: what another worker process or the CLI would see. */
function otherConnection(file: string): DatabaseSync {
  const db = new DatabaseSync(file);
  opened.push(db);
  return db;
}

function rowCount(db: DatabaseSync, table = 'oidc_model'): number {
  return Number((db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n);
}

function saveNew(adapter: OidcAdapter): Promise<void> {
  const id = randomId();
  return adapter.upsert(id, tokenPayload(id), 3600);
}

/** Frames in the WAL right now (a checkpoint of mode PASSIVE reports them; TRUNCATE empties it). */
function walFrames(db: DatabaseSync): number {
  return Number((db.prepare('PRAGMA wal_checkpoint(PASSIVE)').get() as { log: number }).log);
}

describe('group commit on the embedded store', () => {
  it('saves requested in one round share one commit: fifty saves write a few WAL frames, not fifty commits of them', async () => {
    const file = newFile();
    const db = open(file);
    const store = new SqliteOidcStore(db, { closeDatabase: false });
    const tokens = store.adapterFor('AccessToken');

    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    await Promise.all(Array.from({ length: 50 }, () => saveNew(tokens)));
    const grouped = walFrames(db);

    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    for (let i = 0; i < 50; i++) await saveNew(tokens);
    const oneByOne = walFrames(db);

    expect(rowCount(db)).toBe(100);
    // One by one, every save commits its table and index pages again.
    expect(oneByOne).toBeGreaterThanOrEqual(50);
    expect(grouped * 5).toBeLessThan(oneByOne);
  });

  it('a save is invisible to every reader until its promise resolves, and visible once it has', async () => {
    const file = newFile();
    const db = open(file);
    const store = new SqliteOidcStore(db, { closeDatabase: false });
    const other = otherConnection(file);
    const tokens = store.adapterFor('AccessToken');
    const id = randomId();

    let settled = false;
    const saving = tokens.upsert(id, tokenPayload(id), 3600).then(() => { settled = true; });
    // Same connection and another one: nothing written yet, so nothing uncommitted can be read.
    expect(await tokens.find(id)).toBeUndefined();
    expect(rowCount(other)).toBe(0);
    expect(settled).toBe(false);

    await saving;
    expect(rowCount(other)).toBe(1);
    expect(await tokens.find(id)).toMatchObject({ kind: 'AccessToken' });
  });

  it('stores the payload as it was when saved, even if the caller changes it before the group runs', async () => {
    const db = open(newFile());
    const store = new SqliteOidcStore(db, { closeDatabase: false });
    const tokens = store.adapterFor('AccessToken');
    const id = randomId();
    const payload = tokenPayload(id, { scope: 'before' });

    const saving = tokens.upsert(id, payload, 3600);
    payload.scope = 'after';
    await saving;

    expect((await tokens.find(id))?.scope).toBe('before');
  });

  it('a write that fails rejects alone: the rest of its group is committed', async () => {
    const file = newFile();
    const db = open(file);
    const store = new SqliteOidcStore(db, { closeDatabase: false });
    const tokens = store.adapterFor('AccessToken');
    const codes = store.adapterFor('AuthorizationCode');
    const [first, second] = [randomId(), randomId()];

    const outcomes = await Promise.allSettled([
      tokens.upsert(first, tokenPayload(first), 3600),
      codes.consume(randomId()), // nothing to consume: invalid_grant
      tokens.upsert(second, tokenPayload(second), 3600),
    ]);

    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ error: 'invalid_grant' });
    expect(rowCount(otherConnection(file))).toBe(2);
  });

  it('two redemptions of one code in the same round: exactly one consumes it', async () => {
    const db = open(newFile());
    const store = new SqliteOidcStore(db, { closeDatabase: false });
    const codes = store.adapterFor('AuthorizationCode');
    const code = randomId();
    await codes.upsert(code, tokenPayload(code, { kind: 'AuthorizationCode' }), 60);

    const outcomes = await Promise.allSettled([codes.consume(code), codes.consume(code)]);

    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect((await codes.find(code))?.consumed).toEqual(expect.any(Number));
  });

  it('runs writes in the order they were requested (the later save of one id wins)', async () => {
    const db = open(newFile());
    const store = new SqliteOidcStore(db, { closeDatabase: false });
    const tokens = store.adapterFor('AccessToken');
    const id = randomId();

    await Promise.all([tokens.upsert(id, tokenPayload(id, { scope: 'first' }), 3600), tokens.upsert(id, tokenPayload(id, { scope: 'second' }), 3600)]);

    expect((await tokens.find(id))?.scope).toBe('second');
  });

  it('closing the store commits the writes still waiting for their group', async () => {
    const file = newFile();
    const store = new SqliteOidcStore(openSqliteDatabase(file));
    const id = randomId();
    const saving = store.adapterFor('AccessToken').upsert(id, tokenPayload(id), 3600);

    await store.close();
    await saving;

    const reopened = new SqliteOidcStore(open(file), { closeDatabase: false });
    expect(await reopened.adapterFor('AccessToken').find(id)).toMatchObject({ kind: 'AccessToken' });
  });

  it('a group whose connection closed meanwhile rejects every write as the store being unavailable', async () => {
    const db = openSqliteDatabase(newFile());
    const store = new SqliteOidcStore(db, { closeDatabase: false });
    const tokens = store.adapterFor('AccessToken');

    const saves = [saveNew(tokens), saveNew(tokens)];
    db.close();

    for (const save of saves) await expect(save).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('a group that cannot take the write lock rejects every write and keeps none of them', async () => {
    const file = newFile();
    const db = open(file);
    db.exec('CREATE TABLE note (text TEXT NOT NULL)');
    db.exec('PRAGMA busy_timeout = 0');
    const group = new GroupCommit(db);
    const other = otherConnection(file);
    other.exec('BEGIN IMMEDIATE'); // another process is writing

    const insert = db.prepare('INSERT INTO note (text) VALUES (?)');
    const writes = [group.run(() => insert.run('a')), group.run(() => insert.run('b'))];
    const outcomes = await Promise.allSettled(writes);
    other.exec('ROLLBACK');

    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
    expect(String((outcomes[0] as PromiseRejectedResult).reason)).toMatch(/locked|busy/i);
    expect(rowCount(db, 'note')).toBe(0);
  });

  it('a full group commits at once, without waiting for the round to end', () => {
    const file = newFile();
    const db = open(file);
    db.exec('CREATE TABLE note (text TEXT NOT NULL)');
    const group = new GroupCommit(db, { maxGroup: 2 });
    const insert = db.prepare('INSERT INTO note (text) VALUES (?)');

    void group.run(() => insert.run('a'));
    expect(rowCount(otherConnection(file), 'note')).toBe(0);
    void group.run(() => insert.run('b'));

    // Synchronously, in the same round: the group of two was committed.
    expect(rowCount(otherConnection(file), 'note')).toBe(2);
    expect(group.pending).toBe(0);
  });

  it('a write requested inside another writer\'s transaction joins that transaction and its fate', async () => {
    const db = open(newFile());
    db.exec('CREATE TABLE note (text TEXT NOT NULL)');
    const group = new GroupCommit(db);
    const insert = db.prepare('INSERT INTO note (text) VALUES (?)');

    let joined: Promise<unknown> | undefined;
    expect(() => writeTransaction(db, () => {
      joined = group.run(() => insert.run('inside'));
      throw new Error('the outer writer fails');
    })).toThrow('the outer writer fails');

    await joined;
    expect(rowCount(db, 'note')).toBe(0);
    expect(group.pending).toBe(0);
  });
});
