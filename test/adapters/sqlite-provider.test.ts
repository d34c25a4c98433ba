/**
 * The SQLite store behind a real oidc-provider instance: the library's models save, find,
 * consume and revoke through SqliteOidcStore, and a double redemption of one authorization code
 * at the real token endpoint gives exactly one token response and one invalid_grant.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import Provider, { errors } from 'oidc-provider';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { oidcAdapterFactory, SqliteOidcStore } from '../../src/adapters/sqlite-oidc-store.ts';
import type { OidcAdapter, OidcStore } from '../../src/adapters/types.ts';

const CLIENT = { client_id: 'c', client_secret: 'x', redirect_uris: ['https://rp.example/cb'] };
const basicAuth = `Basic ${Buffer.from('c:x').toString('base64')}`;

/**
 * The store's adapters, except that AuthorizationCode.find waits for `gate` after reading. The
 * race test sets a two-party gate so both token requests have read the (unconsumed) code before
 * either consumes it: then only the adapter's atomic consume can tell them apart.
 */
function gatedStore(store: OidcStore, gate: { wait: () => Promise<void> }): OidcStore {
  return {
    name: store.name,
    ping: () => store.ping(),
    close: () => store.close(),
    purgeExpired: (now) => store.purgeExpired(now),
    adapterFor(modelName: string): OidcAdapter {
      const adapter = store.adapterFor(modelName);
      if (modelName !== 'AuthorizationCode') return adapter;
      return {
        upsert: (id, payload, expiresIn) => adapter.upsert(id, payload, expiresIn),
        find: async (id) => {
          const found = await adapter.find(id);
          await gate.wait();
          return found;
        },
        findByUid: (uid) => adapter.findByUid(uid),
        findByUserCode: (userCode) => adapter.findByUserCode(userCode),
        consume: (id) => adapter.consume(id),
        destroy: (id) => adapter.destroy(id),
        revokeByGrantId: (grantId) => adapter.revokeByGrantId(grantId),
      };
    },
  };
}

/** A gate that opens once `parties` callers are waiting at it. */
function barrier(parties: number): { wait: () => Promise<void> } {
  let waiting = 0;
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return {
    wait: () => {
      waiting += 1;
      if (waiting >= parties) open();
      return opened;
    },
  };
}

describe('SqliteOidcStore as the adapter of a real oidc-provider', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'perseus-sqlite-provider-'));
  const file = path.join(dir, 'oidc.db');
  let store: SqliteOidcStore;
  let provider: Provider;
  let gate = { wait: async (): Promise<void> => undefined };

  beforeAll(() => {
    store = new SqliteOidcStore(openSqliteDatabase(file));
    provider = new Provider('https://localhost:8443', {
      adapter: oidcAdapterFactory(gatedStore(store, { wait: () => gate.wait() })),
      clients: [CLIENT],
      features: { devInteractions: { enabled: false }, deviceFlow: { enabled: true } },
    });
  });

  afterAll(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function client() {
    const found = await provider.Client.find('c');
    if (!found) throw new Error('static client c not found');
    return found;
  }

  it('saves, finds and revokes an AccessToken through the adapter, never storing its value', async () => {
    const token = new provider.AccessToken({ accountId: 'a', client: await client(), grantId: 'g', gty: 'authorization_code', scope: 'openid' });
    const value = await token.save();

    const found = await provider.AccessToken.find(value);
    expect(found).toMatchObject({ accountId: 'a', clientId: 'c', grantId: 'g', scope: 'openid', jti: value });

    // Read the file through a second connection: the token value appears nowhere.
    const raw = openSqliteDatabase(file);
    try {
      expect(JSON.stringify(raw.prepare('SELECT * FROM oidc_model').all())).not.toContain(value);
    } finally {
      raw.close();
    }

    await provider.AccessToken.revokeByGrantId('g');
    expect(await provider.AccessToken.find(value)).toBeUndefined();
  });

  it('finds a Session by uid (its id comes back with it)', async () => {
    const session = new provider.Session();
    session.accountId = 'a';
    session.loginTs = Math.floor(Date.now() / 1000);
    await session.save(600);

    const byUid = await provider.Session.findByUid(session.uid);
    expect(byUid?.jti).toBe(session.jti);
    expect(byUid?.accountId).toBe('a');
    expect((await provider.Session.find(session.jti))?.uid).toBe(session.uid);
  });

  it('finds a DeviceCode by user code and re-saves it under the same id (device flow)', async () => {
    const deviceCode = new provider.DeviceCode({
      client: await client(),
      userCode: 'WDJBMJHT',
      grantId: 'g3',
      params: { client_id: 'c', scope: 'openid' },
      deviceInfo: { ip: '127.0.0.1', ua: 'test' },
    });
    const value = await deviceCode.save();

    const found = await provider.DeviceCode.findByUserCode('WDJBMJHT');
    expect(found?.jti).toBe(value);
    if (!found) throw new Error('device code not found');
    found.accountId = 'a';
    await found.save();

    expect((await provider.DeviceCode.find(value))?.accountId).toBe('a');
  });

  it('consumes an AuthorizationCode once; a second consume is invalid_grant', async () => {
    const code = new provider.AuthorizationCode({
      accountId: 'a', client: await client(), grantId: 'g2', gty: 'authorization_code', scope: 'openid', redirectUri: CLIENT.redirect_uris[0],
    });
    const value = await code.save();
    const first = await provider.AuthorizationCode.find(value);
    const second = await provider.AuthorizationCode.find(value);
    if (!first || !second) throw new Error('code not found');

    await first.consume();
    await expect(second.consume()).rejects.toBeInstanceOf(errors.InvalidGrant);
    const after = await provider.AuthorizationCode.find(value);
    expect((after as unknown as { consumed?: number } | undefined)?.consumed).toEqual(expect.any(Number));
  });

  async function issueCode(): Promise<{ code: string; verifier: string; grantId: string }> {
    const grant = new provider.Grant({ accountId: 'a', clientId: 'c' });
    grant.addOIDCScope('openid');
    const grantId = await grant.save();

    const verifier = randomBytes(32).toString('base64url');
    const code = await new provider.AuthorizationCode({
      accountId: 'a',
      client: await client(),
      grantId,
      gty: 'authorization_code',
      scope: 'openid',
      redirectUri: CLIENT.redirect_uris[0],
      codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
      codeChallengeMethod: 'S256',
      authTime: Math.floor(Date.now() / 1000),
    }).save();
    return { code, verifier, grantId };
  }

  function redeem(code: string, verifier: string) {
    return request(provider.callback())
      .post('/token')
      .set('Authorization', basicAuth)
      .type('form')
      .send({ grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect_uris[0], code_verifier: verifier });
  }

  it('two parallel redemptions of one code at the token endpoint: one 200, one 400 invalid_grant (atomic consume)', async () => {
    const { code, verifier, grantId } = await issueCode();
    gate = barrier(2); // both requests read the code before either consumes it
    let responses;
    try {
      responses = await Promise.all([redeem(code, verifier), redeem(code, verifier)]);
    } finally {
      gate = { wait: async () => undefined };
    }

    expect(responses.map((r) => r.status).sort()).toEqual([200, 400]);
    const ok = responses.find((r) => r.status === 200);
    const failed = responses.find((r) => r.status === 400);
    expect(ok?.body).toMatchObject({ token_type: 'Bearer', access_token: expect.any(String) });
    expect(failed?.body).toMatchObject({ error: 'invalid_grant' });

    // The loser failed in consume (it never saw the code consumed), so nothing was revoked: the
    // winner's access token is stored (hashed) and found through the adapter.
    expect(await provider.AccessToken.find(ok?.body.access_token)).toMatchObject({ grantId, accountId: 'a' });
  });

  it('a later reuse of the code is invalid_grant and revokes the tokens of the grant (revokeByGrantId)', async () => {
    const { code, verifier, grantId } = await issueCode();
    const first = await redeem(code, verifier);
    expect(first.status).toBe(200);
    expect(await provider.AccessToken.find(first.body.access_token)).toBeDefined();

    const reuse = await redeem(code, verifier);

    expect(reuse.status).toBe(400);
    expect(reuse.body).toMatchObject({ error: 'invalid_grant' });
    expect(await provider.AccessToken.find(first.body.access_token)).toBeUndefined();
    expect(await provider.Grant.find(grantId)).toBeUndefined();
  });
});
