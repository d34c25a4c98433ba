/**
 * The behaviour every OidcStore must show, whatever its backing store. Run it from a
 * `*.test.ts` file:
 *
 *   describeOidcAdapterContract('sqlite', async () => new SqliteOidcStore(openSqliteDatabase(file)));
 *
 * Store-specific properties (e.g. "ids are not stored in clear", which needs to read the raw
 * storage) belong in the store's own test file.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { errors } from 'oidc-provider';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { oidcAdapterFactory } from '../../src/adapters/oidc-adapter-common.ts';
import { StoreUnavailableError } from '../../src/adapters/types.ts';
import type { AdapterPayload, OidcStore } from '../../src/adapters/types.ts';

/** An id shaped like oidc-provider's (43 base64url characters, 256 bits). */
export function randomId(): string {
  return randomBytes(32).toString('base64url');
}

function epochSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** A payload shaped like the library's AccessToken payload, plus keys the adapter does not know. */
export function tokenPayload(id: string, extra: AdapterPayload = {}): AdapterPayload {
  const iat = epochSeconds();
  return {
    iat,
    exp: iat + 3600,
    jti: id,
    kind: 'AccessToken',
    accountId: 'account-1',
    clientId: 'client-1',
    grantId: 'grant-1',
    scope: 'openid offline_access',
    ...extra,
  };
}

async function expectInvalidGrant(promise: Promise<unknown>): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(errors.InvalidGrant);
  expect((error as InstanceType<typeof errors.InvalidGrant>).error).toBe('invalid_grant');
  expect((error as InstanceType<typeof errors.InvalidGrant>).status).toBe(400);
}

export function describeOidcAdapterContract(
  storeName: string,
  makeStore: () => Promise<OidcStore>,
  cleanup?: (store: OidcStore) => Promise<void>,
): void {
  describe(`OidcStore contract: ${storeName}`, () => {
    let store: OidcStore;

    beforeEach(async () => {
      store = await makeStore();
    });

    afterEach(async () => {
      await store.close();
      await cleanup?.(store);
    });

    it('upsert then find returns the payload, unknown keys included', async () => {
      const adapter = store.adapterFor('AccessToken');
      const id = randomId();
      const payload = tokenPayload(id, {
        'x-unknown': true,
        nested: { list: [1, 'two', { three: null }], emoji: '🔑' },
        extra: { license: 'https://registry.core.ib1.org/scheme/perseus/license/energy-consumption-data/2024-12-05' },
      });

      await adapter.upsert(id, payload, 3600);

      expect(await adapter.find(id)).toEqual(payload);
    });

    it('find, findByUid and findByUserCode return undefined for unknown keys', async () => {
      expect(await store.adapterFor('AccessToken').find(randomId())).toBeUndefined();
      expect(await store.adapterFor('Session').findByUid(randomId())).toBeUndefined();
      expect(await store.adapterFor('DeviceCode').findByUserCode('WDJB-MJHT')).toBeUndefined();
    });

    it('upsert replaces the whole payload', async () => {
      const adapter = store.adapterFor('Interaction');
      const id = randomId();
      await adapter.upsert(id, { jti: id, kind: 'Interaction', old: 'gone', returnTo: '/a' }, 60);
      await adapter.upsert(id, { jti: id, kind: 'Interaction', returnTo: '/b' }, 60);

      expect(await adapter.find(id)).toEqual({ jti: id, kind: 'Interaction', returnTo: '/b' });
    });

    it('keeps models apart: the same id in two models is two entries', async () => {
      const id = randomId();
      await store.adapterFor('AccessToken').upsert(id, tokenPayload(id, { which: 'at' }), 60);
      await store.adapterFor('RefreshToken').upsert(id, tokenPayload(id, { kind: 'RefreshToken', which: 'rt' }), 60);

      expect((await store.adapterFor('AccessToken').find(id))?.which).toBe('at');
      expect((await store.adapterFor('RefreshToken').find(id))?.which).toBe('rt');
      await store.adapterFor('AccessToken').destroy(id);
      expect(await store.adapterFor('AccessToken').find(id)).toBeUndefined();
      expect((await store.adapterFor('RefreshToken').find(id))?.which).toBe('rt');
    });

    it('never returns an expired entry; no expiresIn means no expiry', async () => {
      const tokens = store.adapterFor('AccessToken');
      const sessions = store.adapterFor('Session');
      const deviceCodes = store.adapterFor('DeviceCode');
      const shortLived = randomId();
      const forever = randomId();
      const sessionId = randomId();
      const uid = randomId();
      const deviceCode = randomId();
      const userCode = 'BCDF-GHJK';

      await tokens.upsert(shortLived, tokenPayload(shortLived), 1);
      await tokens.upsert(forever, tokenPayload(forever));
      await sessions.upsert(sessionId, { jti: sessionId, kind: 'Session', uid }, 1);
      await deviceCodes.upsert(deviceCode, { jti: deviceCode, kind: 'DeviceCode', userCode, grantId: 'g' }, 1);
      expect(await tokens.find(shortLived)).toBeDefined();

      await sleep(1200);

      expect(await tokens.find(shortLived)).toBeUndefined();
      expect(await sessions.findByUid(uid)).toBeUndefined();
      expect(await sessions.find(sessionId)).toBeUndefined();
      expect(await deviceCodes.findByUserCode(userCode)).toBeUndefined();
      await expectInvalidGrant(tokens.consume(shortLived));
      expect(await tokens.find(forever)).toEqual(tokenPayload(forever, { iat: expect.any(Number), exp: expect.any(Number) }));
    });

    it('findByUid finds a Session, with its id (jti), and follows uid changes', async () => {
      const sessions = store.adapterFor('Session');
      const id = randomId();
      const uid = randomId();
      const payload = { jti: id, kind: 'Session', uid, accountId: 'acc', loginTs: epochSeconds(), authorizations: { c: { sid: 's' } } };
      await sessions.upsert(id, payload, 600);

      expect(await sessions.findByUid(uid)).toEqual(payload);
      expect(await store.adapterFor('Interaction').findByUid(uid)).toBeUndefined();

      const newUid = randomId();
      await sessions.upsert(id, { ...payload, uid: newUid }, 600);
      expect(await sessions.findByUid(uid)).toBeUndefined();
      expect((await sessions.findByUid(newUid))?.jti).toBe(id);

      await sessions.destroy(id);
      expect(await sessions.findByUid(newUid)).toBeUndefined();
    });

    it('findByUserCode finds a DeviceCode, with its id (jti)', async () => {
      const deviceCodes = store.adapterFor('DeviceCode');
      const id = randomId();
      const payload = { jti: id, kind: 'DeviceCode', userCode: 'LMNP-QRST', grantId: 'g', clientId: 'c', params: { scope: 'openid' } };
      await deviceCodes.upsert(id, payload, 600);

      expect(await deviceCodes.findByUserCode('LMNP-QRST')).toEqual(payload);
      expect(await deviceCodes.findByUserCode('lmnp-qrst')).toBeUndefined();
      expect(await store.adapterFor('AccessToken').findByUserCode('LMNP-QRST')).toBeUndefined();
    });

    it('consume marks the entry consumed; a second consume is invalid_grant', async () => {
      const codes = store.adapterFor('AuthorizationCode');
      const id = randomId();
      const payload = tokenPayload(id, { kind: 'AuthorizationCode', redirectUri: 'https://rp.example/cb' });
      await codes.upsert(id, payload, 60);
      expect((await codes.find(id))?.consumed).toBeUndefined();

      const before = epochSeconds();
      await codes.consume(id);
      const found = await codes.find(id);
      expect(found).toEqual({ ...payload, consumed: expect.any(Number) });
      expect(found?.consumed).toBeGreaterThanOrEqual(before);
      expect(found?.consumed).toBeLessThanOrEqual(epochSeconds());

      await expectInvalidGrant(codes.consume(id));
    });

    it('consume of an unknown or destroyed entry is invalid_grant', async () => {
      const codes = store.adapterFor('AuthorizationCode');
      await expectInvalidGrant(codes.consume(randomId()));

      const id = randomId();
      await codes.upsert(id, tokenPayload(id, { kind: 'AuthorizationCode' }), 60);
      await codes.destroy(id);
      await expectInvalidGrant(codes.consume(id));
    });

    it('of 50 parallel consumes of one id exactly one succeeds, the others are invalid_grant', async () => {
      const tokens = store.adapterFor('RefreshToken');
      const id = randomId();
      await tokens.upsert(id, tokenPayload(id, { kind: 'RefreshToken' }), 60);

      const results = await Promise.allSettled(Array.from({ length: 50 }, () => tokens.consume(id)));

      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(rejected).toHaveLength(49);
      for (const { reason } of rejected) {
        expect(reason).toBeInstanceOf(errors.InvalidGrant);
      }
    });

    it('re-saving a consumed entry keeps it consumed', async () => {
      const codes = store.adapterFor('DeviceCode');
      const id = randomId();
      const payload = { jti: id, kind: 'DeviceCode', userCode: 'VWXZ-BCDF', grantId: 'g' };
      await codes.upsert(id, payload, 60);
      await codes.consume(id);

      await codes.upsert(id, { ...payload, accountId: 'acc' }, 60);

      expect((await codes.find(id))?.consumed).toEqual(expect.any(Number));
      expect((await codes.findByUserCode('VWXZ-BCDF'))?.consumed).toEqual(expect.any(Number));
      await expectInvalidGrant(codes.consume(id));
    });

    it("revokeByGrantId removes that grant's entries of that model only", async () => {
      const accessTokens = store.adapterFor('AccessToken');
      const refreshTokens = store.adapterFor('RefreshToken');
      const [a1, a2, a3, r1] = [randomId(), randomId(), randomId(), randomId()];
      await accessTokens.upsert(a1, tokenPayload(a1, { grantId: 'grant-A' }), 60);
      await accessTokens.upsert(a2, tokenPayload(a2, { grantId: 'grant-A' }));
      await accessTokens.upsert(a3, tokenPayload(a3, { grantId: 'grant-B' }), 60);
      await refreshTokens.upsert(r1, tokenPayload(r1, { kind: 'RefreshToken', grantId: 'grant-A' }), 60);

      await accessTokens.revokeByGrantId('grant-A');

      expect(await accessTokens.find(a1)).toBeUndefined();
      expect(await accessTokens.find(a2)).toBeUndefined();
      expect(await accessTokens.find(a3)).toBeDefined();
      expect(await refreshTokens.find(r1)).toBeDefined();

      await refreshTokens.revokeByGrantId('grant-A');
      expect(await refreshTokens.find(r1)).toBeUndefined();
      await accessTokens.revokeByGrantId('no-such-grant');
      expect(await accessTokens.find(a3)).toBeDefined();
    });

    it('revokeByGrantId follows grant changes made by upsert', async () => {
      const accessTokens = store.adapterFor('AccessToken');
      const id = randomId();
      await accessTokens.upsert(id, tokenPayload(id, { grantId: 'grant-old' }), 60);
      await accessTokens.upsert(id, tokenPayload(id, { grantId: 'grant-new' }), 60);

      await accessTokens.revokeByGrantId('grant-old');
      expect(await accessTokens.find(id)).toBeDefined();
      await accessTokens.revokeByGrantId('grant-new');
      expect(await accessTokens.find(id)).toBeUndefined();
    });

    it('destroy removes the entry and is a no-op for unknown ids', async () => {
      const grants = store.adapterFor('Grant');
      const id = randomId();
      await grants.upsert(id, { jti: id, kind: 'Grant', accountId: 'acc', clientId: 'c', openid: { scope: 'openid' } }, 600);

      await grants.destroy(id);
      await grants.destroy(id);
      await grants.destroy(randomId());

      expect(await grants.find(id)).toBeUndefined();
    });

    it('stores payloads without a jti as given (e.g. Client metadata)', async () => {
      const clients = store.adapterFor('Client');
      const metadata = { client_id: 'client-x', redirect_uris: ['https://rp.example/cb'], token_endpoint_auth_method: 'tls_client_auth' };
      await clients.upsert('client-x', metadata);

      expect(await clients.find('client-x')).toEqual(metadata);
    });

    it('adapterFor and oidcAdapterFactory give adapters bound to the model name', async () => {
      const Adapter = oidcAdapterFactory(store);
      const constructed = new Adapter('AccessToken');
      const called = Adapter('AccessToken');
      const id = randomId();

      await constructed.upsert(id, tokenPayload(id), 60);

      expect(await called.find(id)).toEqual(tokenPayload(id, { iat: expect.any(Number), exp: expect.any(Number) }));
      expect(await store.adapterFor('AccessToken').find(id)).toBeDefined();
      expect(await new Adapter('RefreshToken').find(id)).toBeUndefined();
    });

    it('purgeExpired keeps live entries and resolves to a count', async () => {
      const tokens = store.adapterFor('AccessToken');
      const live = randomId();
      const forever = randomId();
      await tokens.upsert(live, tokenPayload(live), 3600);
      await tokens.upsert(forever, tokenPayload(forever));

      const purged = await store.purgeExpired();

      expect(purged).toBeGreaterThanOrEqual(0);
      expect(await tokens.find(live)).toBeDefined();
      expect(await tokens.find(forever)).toBeDefined();
    });

    it('ping resolves while open; after close it rejects with StoreUnavailableError; close is idempotent', async () => {
      await expect(store.ping()).resolves.toBeUndefined();

      await store.close();
      await store.close();

      const error: unknown = await store.ping().then(() => undefined, (reason: unknown) => reason);
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect((error as StoreUnavailableError).code).toBe('store_unavailable');
      expect((error as StoreUnavailableError).store).toBe(store.name);
    });
  });
}
