import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { DatabaseSync } from 'node:sqlite';

import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { migrate, openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { SqliteOidcStore } from '../../src/adapters/sqlite-oidc-store.ts';
import { StoreUnavailableError } from '../../src/adapters/types.ts';
import { describeOidcAdapterContract, randomId, tokenPayload } from './oidc-adapter-contract.ts';

const workDir = mkdtempSync(path.join(tmpdir(), 'perseus-sqlite-adapter-'));
let fileCounter = 0;
const nextFile = (): string => path.join(workDir, `store-${++fileCounter}`, 'oidc.db');

afterAll(() => {
  rmSync(workDir, { recursive: true, force: true });
});

const storeFiles = new WeakMap<object, string>();

describeOidcAdapterContract(
  'sqlite (file in os.tmpdir())',
  async () => {
    const file = nextFile();
    const store = new SqliteOidcStore(openSqliteDatabase(file));
    storeFiles.set(store, file);
    return store;
  },
  async (store) => {
    const file = storeFiles.get(store);
    if (file) rmSync(path.dirname(file), { recursive: true, force: true });
  },
);

describeOidcAdapterContract('sqlite (:memory:)', async () => new SqliteOidcStore(openSqliteDatabase(':memory:')));

describe('SQLite store specifics', () => {
  const toClose: DatabaseSync[] = [];
  const track = (db: DatabaseSync): DatabaseSync => {
    toClose.push(db);
    return db;
  };
  afterEach(() => {
    for (const db of toClose.splice(0)) if (db.isOpen) db.close();
  });

  it('openSqliteDatabase creates the directory and file and sets the pragmas', () => {
    const file = path.join(workDir, 'pragmas', 'nested', 'deeper', 'store.db');
    const db = track(openSqliteDatabase(file));

    expect(existsSync(file)).toBe(true);
    expect(db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
    expect(db.prepare('PRAGMA busy_timeout').get()).toEqual({ timeout: 5000 });
    expect(db.prepare('PRAGMA foreign_keys').get()).toEqual({ foreign_keys: 1 });
    expect(db.prepare('PRAGMA synchronous').get()).toEqual({ synchronous: 1 });
    expect(db.prepare('PRAGMA cache_size').get()).toEqual({ cache_size: -65536 });
    expect(db.prepare('PRAGMA mmap_size').get()).toEqual({ mmap_size: 0 });
    if (process.platform !== 'win32') {
      expect(statSync(file).mode & 0o777).toBe(0o600);
    }
  });

  it('openSqliteDatabase sizes the page cache as asked', () => {
    const db = track(openSqliteDatabase(path.join(workDir, 'cache', 'store.db'), { cacheMib: 512 }));
    expect(db.prepare('PRAGMA cache_size').get()).toEqual({ cache_size: -524288 });
  });

  it('openSqliteDatabase accepts :memory:', () => {
    const db = track(openSqliteDatabase(':memory:'));
    expect(db.prepare('PRAGMA busy_timeout').get()).toEqual({ timeout: 5000 });
    expect(db.prepare('PRAGMA foreign_keys').get()).toEqual({ foreign_keys: 1 });
  });

  it('migrate applies a named migration once, and rolls back a failing one', () => {
    const db = track(openSqliteDatabase(':memory:'));
    const sql = 'CREATE TABLE permission (id TEXT PRIMARY KEY); CREATE INDEX permission_id ON permission (id);';

    expect(migrate(db, 'permissions/001_create', sql)).toBe(true);
    expect(migrate(db, 'permissions/001_create', sql)).toBe(false);
    expect(db.prepare("SELECT name FROM schema_migrations WHERE name LIKE 'permissions/%'").all()).toEqual([
      { name: 'permissions/001_create' },
    ]);

    expect(() => migrate(db, 'permissions/002_broken', 'CREATE TABLE half_done (id TEXT); THIS IS NOT SQL;')).toThrow();
    expect(db.isTransaction).toBe(false);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'half_done'").get()).toBeUndefined();
    expect(migrate(db, 'permissions/002_broken', 'CREATE TABLE half_done (id TEXT);')).toBe(true);
  });

  it('migrate inside an open transaction uses a savepoint', () => {
    const db = track(openSqliteDatabase(':memory:'));
    db.exec('BEGIN');
    expect(migrate(db, 'nested/001', 'CREATE TABLE nested_t (id TEXT)')).toBe(true);
    expect(db.isTransaction).toBe(true);
    db.exec('ROLLBACK');
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'nested_t'").get()).toBeUndefined();
  });

  it('never stores ids (token values) in clear, in the table or in the files', async () => {
    const file = nextFile();
    const db = track(openSqliteDatabase(file));
    const store = new SqliteOidcStore(db);
    const models = ['AccessToken', 'RefreshToken', 'AuthorizationCode', 'PushedAuthorizationRequest', 'ClientCredentials', 'Interaction', 'Grant'];
    const ids = new Map(models.map((model) => [model, randomId()]));
    for (const [model, id] of ids) {
      await store.adapterFor(model).upsert(id, tokenPayload(id, { kind: model }), 600);
    }
    const code = ids.get('AuthorizationCode') ?? '';
    await store.adapterFor('AuthorizationCode').consume(code);
    await store.adapterFor('AuthorizationCode').upsert(code, tokenPayload(code, { kind: 'AuthorizationCode' }), 600);

    const rows = db.prepare('SELECT * FROM oidc_model').all();
    expect(rows).toHaveLength(models.length);
    const dump = JSON.stringify(rows);
    for (const [model, id] of ids) {
      expect(dump).not.toContain(id);
      const row = rows.find((r) => r.model === model);
      expect(row?.key).toBe(hashIdentifier(id));
      expect(row?.jti_redacted).toBe(1);
      expect(JSON.parse(String(row?.payload))).not.toHaveProperty('jti');
    }

    // ... nor on disk: checkpoint the WAL into the main file, then read both.
    db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    const wal = `${file}-wal`;
    const bytes = Buffer.concat([readFileSync(file), existsSync(wal) ? readFileSync(wal) : Buffer.alloc(0)]);
    for (const id of ids.values()) {
      expect(bytes.includes(id)).toBe(false);
    }

    // find puts jti back from the id.
    for (const [model, id] of ids) {
      expect((await store.adapterFor(model).find(id))?.jti).toBe(id);
    }
  });

  it('hashes the uid and user code lookup columns; Session and DeviceCode keep jti in the payload (documented choice)', async () => {
    const db = track(openSqliteDatabase(':memory:'));
    const store = new SqliteOidcStore(db);
    const sessionId = randomId();
    const uid = randomId();
    const deviceCode = randomId();
    await store.adapterFor('Session').upsert(sessionId, { jti: sessionId, kind: 'Session', uid }, 600);
    await store.adapterFor('DeviceCode').upsert(deviceCode, { jti: deviceCode, kind: 'DeviceCode', userCode: 'WDJB-MJHT' }, 600);

    const session = db.prepare("SELECT * FROM oidc_model WHERE model = 'Session'").get();
    expect(session?.key).toBe(hashIdentifier(sessionId));
    expect(session?.uid).toBe(hashIdentifier(uid));
    expect(session?.jti_redacted).toBe(0);
    expect(JSON.parse(String(session?.payload)).jti).toBe(sessionId);

    const device = db.prepare("SELECT * FROM oidc_model WHERE model = 'DeviceCode'").get();
    expect(device?.user_code).toBe(hashIdentifier('WDJB-MJHT'));
    expect(JSON.parse(String(device?.payload)).jti).toBe(deviceCode);
  });

  it('indexes uid, user code and grant only for rows that have them, and look-ups still use those indexes', async () => {
    const file = nextFile();
    const db = openSqliteDatabase(file);
    const store = new SqliteOidcStore(db, { closeDatabase: false });
    const tokenId = randomId();
    await store.adapterFor('AccessToken').upsert(tokenId, tokenPayload(tokenId, { grantId: 'grant-1' }), 600);
    await store.adapterFor('Session').upsert(randomId(), { uid: randomId(), accountId: 'acct' } as never, 600);
    const definition = (index: string) => (db.prepare('SELECT sql FROM sqlite_master WHERE name = ?').get(index) as { sql: string }).sql;
    expect(definition('oidc_model_grant_id')).toMatch(/WHERE grant_id IS NOT NULL$/);
    expect(definition('oidc_model_uid')).toMatch(/WHERE uid IS NOT NULL$/);
    expect(definition('oidc_model_user_code')).toMatch(/WHERE user_code IS NOT NULL$/);
    const plan = (sql: string) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[]).map((r) => r.detail).join(' ');
    expect(plan("SELECT payload FROM oidc_model WHERE model = 'Session' AND uid = 'x'")).toContain('USING INDEX oidc_model_uid');
    expect(plan("SELECT payload FROM oidc_model WHERE model = 'DeviceCode' AND user_code = 'x'")).toContain('USING INDEX oidc_model_user_code');
    expect(plan("DELETE FROM oidc_model WHERE model = 'AccessToken' AND grant_id = 'g'")).toContain('USING INDEX oidc_model_grant_id');
    await store.close();
    db.close();
  });

  it('keeps everything across a restart (close and reopen the file)', async () => {
    const file = nextFile();
    const first = new SqliteOidcStore(openSqliteDatabase(file));
    const token = randomId();
    const code = randomId();
    const sessionId = randomId();
    const uid = randomId();
    await first.adapterFor('AccessToken').upsert(token, tokenPayload(token), 3600);
    await first.adapterFor('AuthorizationCode').upsert(code, tokenPayload(code, { kind: 'AuthorizationCode' }), 600);
    await first.adapterFor('AuthorizationCode').consume(code);
    await first.adapterFor('Session').upsert(sessionId, { jti: sessionId, kind: 'Session', uid }, 600);
    await first.close();

    const db = track(openSqliteDatabase(file));
    const second = new SqliteOidcStore(db);

    expect(await second.adapterFor('AccessToken').find(token)).toEqual(tokenPayload(token, { iat: expect.any(Number), exp: expect.any(Number) }));
    expect((await second.adapterFor('AuthorizationCode').find(code))?.consumed).toEqual(expect.any(Number));
    await expect(second.adapterFor('AuthorizationCode').consume(code)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect((await second.adapterFor('Session').findByUid(uid))?.jti).toBe(sessionId);
    expect(db.prepare("SELECT count(*) AS n FROM schema_migrations WHERE name = 'oidc_model/001_create'").get()).toEqual({ n: 1 });
  });

  it('enforces expiry on read and purges rows only after the grace period', async () => {
    let now = Date.UTC(2025, 0, 1);
    const db = track(openSqliteDatabase(':memory:'));
    const store = new SqliteOidcStore(db, { now: () => now, purgeGraceMs: 60_000 });
    const tokens = store.adapterFor('AccessToken');
    const [short, long, forever] = [randomId(), randomId(), randomId()];
    await tokens.upsert(short, tokenPayload(short), 10);
    await tokens.upsert(long, tokenPayload(long), 3600);
    await tokens.upsert(forever, tokenPayload(forever));
    const rowCount = (): unknown => db.prepare('SELECT count(*) AS n FROM oidc_model').get()?.n;

    now += 10_000;
    expect(await tokens.find(short)).toBeUndefined();
    expect(await tokens.find(long)).toBeDefined();
    expect(await store.purgeExpired()).toBe(0); // expired, but within the grace period
    expect(rowCount()).toBe(3);

    now += 60_000;
    expect(await store.purgeExpired()).toBe(1);
    expect(rowCount()).toBe(2);

    expect(await store.purgeExpired(new Date(now + 3600_000 + 60_000))).toBe(1);
    expect(await tokens.find(forever)).toBeDefined();
    expect(rowCount()).toBe(1);
  });

  it('findWithGrant reads a token and the grant it names as find(id) and find(grantId) do, in one statement', async () => {
    let now = Date.UTC(2025, 0, 1);
    const db = track(openSqliteDatabase(':memory:'));
    const store = new SqliteOidcStore(db, { now: () => now });
    const [tokens, refreshTokens, grants] = ['AccessToken', 'RefreshToken', 'Grant'].map((model) => store.adapterFor(model));
    const [withGrant, lostGrant, noGrant, refresh, grantId, goneGrantId] = [randomId(), randomId(), randomId(), randomId(), randomId(), randomId()];
    await grants.upsert(grantId, { jti: grantId, kind: 'Grant', accountId: 'account-1', clientId: 'client-1', exp: 1 }, 60);
    await tokens.upsert(withGrant, tokenPayload(withGrant, { grantId }), 3600);
    await tokens.upsert(lostGrant, tokenPayload(lostGrant, { grantId: goneGrantId }), 3600);
    await tokens.upsert(noGrant, tokenPayload(noGrant, { grantId: undefined }), 3600);
    await refreshTokens.upsert(refresh, tokenPayload(refresh, { kind: 'RefreshToken', grantId }), 3600);

    expect(await tokens.findWithGrant!(withGrant)).toEqual({ token: await tokens.find(withGrant), grant: await grants.find(grantId) });
    expect((await tokens.findWithGrant!(withGrant))?.grant).toMatchObject({ jti: grantId, kind: 'Grant' }); // the grant's jti put back
    expect(await tokens.findWithGrant!(lostGrant)).toEqual({ token: await tokens.find(lostGrant), grant: undefined });
    expect(await tokens.findWithGrant!(noGrant)).toEqual({ token: await tokens.find(noGrant), grant: undefined });
    expect(await tokens.findWithGrant!(randomId())).toBeUndefined();
    expect(await tokens.findWithGrant!(refresh)).toBeUndefined(); // another model's id
    // Only the model introspection reads itself has it.
    expect(refreshTokens.findWithGrant).toBeUndefined();
    expect(grants.findWithGrant).toBeUndefined();

    // A grant_id column that disagrees with the payload (never written so): the payload's grant is read.
    const odd = randomId();
    await tokens.upsert(odd, tokenPayload(odd, { grantId }), 3600);
    db.prepare("UPDATE oidc_model SET grant_id = 'another' WHERE model = 'AccessToken' AND key = ?").run(hashIdentifier(odd));
    expect((await tokens.findWithGrant!(odd))?.grant).toEqual(await grants.find(grantId));

    now += 60_000; // the grant expired, the token not yet
    expect(await tokens.findWithGrant!(withGrant)).toEqual({ token: await tokens.find(withGrant), grant: undefined });
    now += 3600_000;
    expect(await tokens.findWithGrant!(withGrant)).toBeUndefined();
  });

  it('applies clockToleranceSeconds to expiry', async () => {
    let now = Date.UTC(2025, 0, 1);
    const store = new SqliteOidcStore(track(openSqliteDatabase(':memory:')), { now: () => now, clockToleranceSeconds: 5 });
    const id = randomId();
    await store.adapterFor('AccessToken').upsert(id, tokenPayload(id), 10);
    now += 14_000;
    expect(await store.adapterFor('AccessToken').find(id)).toBeDefined();
    now += 1_000;
    expect(await store.adapterFor('AccessToken').find(id)).toBeUndefined();
  });

  it('rejects with StoreUnavailableError once the database is closed; closeDatabase: false leaves a shared handle open', async () => {
    const shared = track(openSqliteDatabase(':memory:'));
    const store = new SqliteOidcStore(shared, { closeDatabase: false });
    await store.close();
    expect(shared.isOpen).toBe(true);
    await expect(store.ping()).resolves.toBeUndefined();

    shared.close();
    await expect(store.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.adapterFor('AccessToken').find(randomId())).rejects.toMatchObject({ code: 'store_unavailable', store: 'sqlite' });
  });

  it('consume is atomic across connections: 8 worker threads race on the same codes, one wins each', async () => {
    const file = nextFile();
    const setup = new SqliteOidcStore(track(openSqliteDatabase(file)));
    const ids = Array.from({ length: 20 }, () => randomId());
    for (const id of ids) {
      await setup.adapterFor('AuthorizationCode').upsert(id, tokenPayload(id, { kind: 'AuthorizationCode' }), 600);
    }

    const barrier = new SharedArrayBuffer(4);
    const workers = Array.from({ length: 8 }, () => new Worker(new URL('./consume-race-worker.ts', import.meta.url), {
      workerData: { file, ids, workers: 8, barrier },
    }));
    const results = await Promise.all(workers.map((worker) => new Promise<string[]>((resolve, reject) => {
      worker.once('message', (message: { results: string[] }) => resolve(message.results));
      worker.once('error', reject);
      worker.once('exit', (code) => {
        if (code !== 0) reject(new Error(`worker exited with ${code}`));
      });
    })));

    ids.forEach((id, index) => {
      const outcomes = results.map((perWorker) => perWorker[index]);
      expect(outcomes.filter((o) => o === 'ok'), `winners for code ${index}`).toHaveLength(1);
      expect(outcomes.filter((o) => o === 'invalid_grant')).toHaveLength(7);
    });
    for (const id of ids) {
      expect((await setup.adapterFor('AuthorizationCode').find(id))?.consumed).toEqual(expect.any(Number));
    }
  });
});
