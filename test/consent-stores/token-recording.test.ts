/**
 * Token recording on the embedded store: the token row, the permission's token fields and
 * history event, the refresh-token link and the audit event are one transaction, so a token never
 * exists without its record, the audit chain stays whole, and processes sharing the file (worker
 * threads with their own connections here) never fork it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

import { afterAll, describe, expect, it } from 'vitest';

import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { newGrant } from './permission-store-contract.ts';
import { accessTokenPayload, recordingDomain, refreshTokenPayload } from './token-recording-support.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'perseus-token-recording-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const file = path.join(dir, `db-${++n}.sqlite`);
  const db = openSqliteDatabase(file);
  return { file, db, ...recordingDomain(db) };
};

describe('token recording on SQLite', () => {
  it('records an access token on its permission, in its history and in the audit log', async () => {
    const { db, tokens, store, audit } = fresh();
    const g = newGrant({ at: new Date(Date.now() - 1000), expires: new Date(Date.now() + 300_000) });
    const { permission } = await store.recordGrant(g);
    const iat = Math.floor(Date.now() / 1000);
    await tokens.adapterFor('AccessToken').upsert('at-1', accessTokenPayload('at-1', g.grantId, g.clientId, iat), 600);

    expect(await tokens.adapterFor('AccessToken').find('at-1')).toMatchObject({ jti: 'at-1', grantId: g.grantId });
    const after = (await store.byId(permission.id))!;
    expect(after.tokenIssuedAt).toEqual(new Date(iat * 1000));
    // Capped at the permission's expiry (the token's own is later).
    expect(after.tokenExpires).toEqual(g.expires);
    const history = await store.history(permission.id);
    expect(history.map((e) => e.kind)).toEqual(['granted', 'token_issued']);
    expect(history[1].detail).toEqual({ tokenExpires: g.expires.toISOString() });
    const events = await audit.list();
    expect(events.map((e) => [e.kind, e.actor, e.detail])).toEqual([['token_issued', g.clientId, { grant: g.grantId }]]);
    expect(await audit.verify()).toEqual({ ok: true, events: 1 });
    db.close();
  });

  it('links a refresh token, and records a refresh as token_refreshed', async () => {
    const { db, tokens, store } = fresh();
    const g = newGrant({ at: new Date(), expires: new Date(Date.now() + 365 * 86_400_000) });
    const { permission } = await store.recordGrant(g);
    await tokens.adapterFor('RefreshToken').upsert('rt-1', refreshTokenPayload('rt-1', g.grantId, g.clientId), 86400);
    expect(await store.refreshTokenLink(hashIdentifier('rt-1'))).toMatchObject({ grantId: g.grantId, clientId: g.clientId });
    await tokens.adapterFor('AccessToken').upsert('at-2', { ...accessTokenPayload('at-2', g.grantId, g.clientId), gty: 'refresh_token' }, 600);
    expect((await store.history(permission.id)).map((e) => e.kind)).toEqual(['granted', 'token_refreshed']);
    db.close();
  });

  it('a token of an unknown grant is saved and audited, with no permission to record on', async () => {
    const { db, tokens, audit } = fresh();
    await tokens.adapterFor('AccessToken').upsert('at-3', accessTokenPayload('at-3', 'grant_unknown', 'https://c.example'), 600);
    expect(await tokens.adapterFor('AccessToken').find('at-3')).toBeDefined();
    expect((await audit.list()).map((e) => e.kind)).toEqual(['token_issued']);
    db.close();
  });

  for (const table of ['audit_event', 'permission_event', 'refresh_token_link']) {
    it(`a failed recording (${table}) fails the save and leaves no token behind`, async () => {
      const { db, tokens, store, audit } = fresh();
      const g = newGrant({ at: new Date(), expires: new Date(Date.now() + 86_400_000) });
      const { permission } = await store.recordGrant(g);
      await audit.append({ kind: 'sign_in', at: new Date(), actor: 'usr_1' });
      db.exec(`CREATE TRIGGER fail_${table} BEFORE INSERT ON ${table} BEGIN SELECT RAISE(ABORT, 'recording failed'); END`);
      const model = table === 'refresh_token_link' ? 'RefreshToken' : 'AccessToken';
      const payload = model === 'RefreshToken' ? refreshTokenPayload('tok', g.grantId, g.clientId) : accessTokenPayload('tok', g.grantId, g.clientId);
      await expect(tokens.adapterFor(model).upsert('tok', payload, 600)).rejects.toThrow('recording failed');
      expect(db.isTransaction).toBe(false);
      expect(await tokens.adapterFor(model).find('tok')).toBeUndefined();
      expect(await store.byId(permission.id)).toEqual(permission);
      expect((await store.history(permission.id)).map((e) => e.kind)).toEqual(['granted']);
      expect(await audit.verify()).toEqual({ ok: true, events: 1 });
      db.exec(`DROP TRIGGER fail_${table}`);
      await tokens.adapterFor(model).upsert('tok', payload, 600);
      expect(await tokens.adapterFor(model).find('tok')).toBeDefined();
      db.close();
    });
  }

  it('inside a transaction already open on the connection, records in a savepoint of it', async () => {
    const { db, tokens, store, audit } = fresh();
    const g = newGrant({ at: new Date(), expires: new Date(Date.now() + 86_400_000) });
    const { permission } = await store.recordGrant(g);
    db.exec('BEGIN IMMEDIATE');
    await tokens.adapterFor('AccessToken').upsert('at-4', accessTokenPayload('at-4', g.grantId, g.clientId), 600);
    expect(db.isTransaction).toBe(true);
    expect((await store.history(permission.id)).map((e) => e.kind)).toEqual(['granted', 'token_issued']);
    db.exec('ROLLBACK');
    expect(await tokens.adapterFor('AccessToken').find('at-4')).toBeUndefined();
    expect((await store.history(permission.id)).map((e) => e.kind)).toEqual(['granted']);
    expect(await audit.verify()).toEqual({ ok: true, events: 0 });
    db.close();
  });

  it('a closed database fails the save as the store says (StoreUnavailableError)', async () => {
    const { db, tokens } = fresh();
    db.close();
    await expect(tokens.adapterFor('AccessToken').upsert('at-5', accessTokenPayload('at-5', 'g', 'c'), 600)).rejects.toMatchObject({ name: 'StoreUnavailableError' });
  });

  it('four connections recording at once keep one unbroken audit chain and every history event', async () => {
    const { file, db, store, audit } = fresh();
    const grants = [newGrant({ at: new Date(), expires: new Date(Date.now() + 86_400_000) }), newGrant({ at: new Date(), expires: new Date(Date.now() + 86_400_000) })];
    const permissions = [];
    for (const g of grants) permissions.push((await store.recordGrant({ ...g, clientId: grants[0].clientId })).permission);
    const workers = 4;
    const rounds = 40;
    const barrier = new SharedArrayBuffer(4);
    await Promise.all(Array.from({ length: workers }, () => new Promise<void>((resolve, reject) => {
      const worker = new Worker(new URL('./token-recording-worker.ts', import.meta.url), {
        workerData: { file, grantIds: grants.map((g) => g.grantId), clientId: grants[0].clientId, rounds, workers, barrier },
      });
      worker.once('message', () => resolve());
      worker.once('error', reject);
      worker.once('exit', (code) => { if (code !== 0) reject(new Error(`worker exited with ${code}`)); });
    })));
    expect(await audit.verify()).toEqual({ ok: true, events: workers * rounds * 2 });
    const issued = (await Promise.all(permissions.map((p) => store.history(p.id)))).flat().filter((e) => e.kind === 'token_issued');
    expect(issued).toHaveLength(workers * rounds);
    db.close();
  });
});
