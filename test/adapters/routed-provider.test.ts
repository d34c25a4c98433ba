/**
 * The production pair behind a real oidc-provider: AccessToken, AuthorizationCode and Session in
 * Redis, RefreshToken and Grant in the MongoDB-protocol server, through RoutedOidcStore. The
 * token endpoint redeems a code once (parallel redemptions: one 200, one invalid_grant), rotates
 * refresh tokens through the Mongo consume, and a code reuse revokes the grant in both stores.
 */
import { createHash, randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MongoOidcStore } from '../../src/adapters/mongo-oidc-store.ts';
import { hashIdentifier, oidcAdapterFactory } from '../../src/adapters/oidc-adapter-common.ts';
import { RedisOidcStore } from '../../src/adapters/redis-oidc-store.ts';
import { modelsRoutedTo, productionRoutedStore } from '../../src/adapters/routed-oidc-store.ts';
import type { RoutedOidcStore } from '../../src/adapters/routed-oidc-store.ts';
import type { OidcAdapter, OidcStore } from '../../src/adapters/types.ts';
import { SKIP_SERVICES, startFerretDb, startRedis, uniqueDatabaseName, uniqueKeyPrefix } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';

const CLIENT = {
  client_id: 'c',
  client_secret: 'x',
  redirect_uris: ['https://rp.example/cb'],
  grant_types: ['authorization_code', 'refresh_token'],
};
const basicAuth = `Basic ${Buffer.from('c:x').toString('base64')}`;

/** AuthorizationCode.find waits at `gate` after reading, so two redemptions both read before either consumes. */
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

describe.skipIf(SKIP_SERVICES)('the routed production pair as the adapter of a real oidc-provider', () => {
  let redis: RunningService;
  let mongo: RunningService;
  let store: RoutedOidcStore;
  let mongoStore: MongoOidcStore;
  let redisStore: RedisOidcStore;
  let keyPrefix: string;
  let provider: Provider;
  let gate = { wait: async (): Promise<void> => undefined };

  beforeAll(async () => {
    [redis, mongo] = await Promise.all([startRedis(), startFerretDb()]);
    keyPrefix = uniqueKeyPrefix('provider');
    [mongoStore, redisStore] = await Promise.all([
      MongoOidcStore.connect(mongo.url, { dbName: uniqueDatabaseName('provider'), models: modelsRoutedTo('mongo') }),
      RedisOidcStore.connect(redis.url, { keyPrefix }),
    ]);
    store = productionRoutedStore({ mongo: mongoStore, redis: redisStore });
    await mongoStore.ensureIndexes();
    provider = new Provider('https://localhost:8443', {
      adapter: oidcAdapterFactory(gatedStore(store, { wait: () => gate.wait() })),
      clients: [CLIENT],
      features: { devInteractions: { enabled: false } },
      rotateRefreshToken: true,
    });
  });

  afterAll(async () => {
    await store?.close();
    await Promise.allSettled([redis?.stop(), mongo?.stop()]);
  });

  async function client() {
    const found = await provider.Client.find('c');
    if (!found) throw new Error('static client c not found');
    return found;
  }

  /** The raw Mongo document of a model entry, or null. */
  async function mongoDocument(model: string, id: string) {
    return (await mongoStore.connection.db?.collection(mongoStore.collectionName(model)).findOne({ _id: hashIdentifier(id) as never })) ?? null;
  }

  async function redisHasEntry(model: string, id: string): Promise<boolean> {
    return (await redisStore.client.exists(`${keyPrefix}${model}:${hashIdentifier(id)}`)) === 1;
  }

  async function issueCode(): Promise<{ code: string; verifier: string; grantId: string }> {
    const grant = new provider.Grant({ accountId: 'a', clientId: 'c' });
    grant.addOIDCScope('openid offline_access');
    const grantId = await grant.save();

    const verifier = randomBytes(32).toString('base64url');
    const code = await new provider.AuthorizationCode({
      accountId: 'a',
      client: await client(),
      grantId,
      gty: 'authorization_code',
      scope: 'openid offline_access',
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

  function refresh(refreshToken: string) {
    return request(provider.callback())
      .post('/token')
      .set('Authorization', basicAuth)
      .type('form')
      .send({ grant_type: 'refresh_token', refresh_token: refreshToken });
  }

  it('stores AccessToken in Redis and Grant in Mongo, hashed; finds a Session by uid in Redis', async () => {
    const grant = new provider.Grant({ accountId: 'a', clientId: 'c' });
    grant.addOIDCScope('openid');
    const grantId = await grant.save();
    const token = new provider.AccessToken({ accountId: 'a', client: await client(), grantId, gty: 'authorization_code', scope: 'openid' });
    const value = await token.save();

    expect(await provider.AccessToken.find(value)).toMatchObject({ accountId: 'a', clientId: 'c', grantId, jti: value });
    expect(await redisHasEntry('AccessToken', value)).toBe(true);
    expect(await mongoDocument('AccessToken', value)).toBeNull();
    expect(await mongoDocument('Grant', grantId)).toMatchObject({ _id: hashIdentifier(grantId) });
    expect(await redisHasEntry('Grant', grantId)).toBe(false);

    const session = new provider.Session();
    session.accountId = 'a';
    session.loginTs = Math.floor(Date.now() / 1000);
    await session.save(600);
    expect((await provider.Session.findByUid(session.uid))?.jti).toBe(session.jti);
    expect(await redisHasEntry('Session', session.jti)).toBe(true);
  });

  it('two parallel redemptions of one code: one 200 (with a refresh token in Mongo), one 400 invalid_grant', async () => {
    const { code, verifier, grantId } = await issueCode();
    gate = barrier(2);
    let responses;
    try {
      responses = await Promise.all([redeem(code, verifier), redeem(code, verifier)]);
    } finally {
      gate = { wait: async () => undefined };
    }

    expect(responses.map((r) => r.status).sort()).toEqual([200, 400]);
    const ok = responses.find((r) => r.status === 200);
    expect(responses.find((r) => r.status === 400)?.body).toMatchObject({ error: 'invalid_grant' });
    expect(ok?.body).toMatchObject({ token_type: 'Bearer', access_token: expect.any(String), refresh_token: expect.any(String) });

    expect(await provider.AccessToken.find(ok?.body.access_token)).toMatchObject({ grantId, accountId: 'a' });
    expect(await redisHasEntry('AccessToken', ok?.body.access_token)).toBe(true);
    const refreshDoc = await mongoDocument('RefreshToken', ok?.body.refresh_token);
    expect(refreshDoc).toMatchObject({ _id: hashIdentifier(ok?.body.refresh_token), grantId });
    expect(refreshDoc?.consumedAt ?? null).toBeNull();
    expect(await redisHasEntry('AuthorizationCode', code)).toBe(true); // kept, consumed, until it expires
    expect(((await provider.AuthorizationCode.find(code)) as { consumed?: number } | undefined)?.consumed).toEqual(expect.any(Number));
  });

  it('refresh token rotation consumes the old refresh token in Mongo; reusing it is invalid_grant', async () => {
    const { code, verifier } = await issueCode();
    const first = await redeem(code, verifier);
    expect(first.status).toBe(200);

    const rotated = await refresh(first.body.refresh_token);
    expect(rotated.status).toBe(200);
    expect(rotated.body.refresh_token).not.toBe(first.body.refresh_token);
    expect((await mongoDocument('RefreshToken', first.body.refresh_token))?.consumedAt).toBeInstanceOf(Date);

    const reuse = await refresh(first.body.refresh_token);
    expect(reuse.status).toBe(400);
    expect(reuse.body).toMatchObject({ error: 'invalid_grant' });
    // Reuse of a rotated refresh token revokes the grant: the newer refresh token (Mongo) and
    // the access tokens (Redis) go with it.
    expect(await mongoDocument('RefreshToken', rotated.body.refresh_token)).toBeNull();
    expect(await redisHasEntry('AccessToken', rotated.body.access_token)).toBe(false);
  });

  it('a later reuse of the code revokes the grant in both stores (revokeByGrantId per model)', async () => {
    const { code, verifier, grantId } = await issueCode();
    const first = await redeem(code, verifier);
    expect(first.status).toBe(200);
    const { access_token: accessToken, refresh_token: refreshToken } = first.body as { access_token: string; refresh_token: string };
    expect(await redisHasEntry('AccessToken', accessToken)).toBe(true);
    expect(await mongoDocument('RefreshToken', refreshToken)).not.toBeNull();
    expect(await mongoDocument('Grant', grantId)).not.toBeNull();

    const reuse = await redeem(code, verifier);

    expect(reuse.status).toBe(400);
    expect(reuse.body).toMatchObject({ error: 'invalid_grant' });
    expect(await provider.AccessToken.find(accessToken)).toBeUndefined();
    expect(await redisHasEntry('AccessToken', accessToken)).toBe(false);
    expect(await provider.RefreshToken.find(refreshToken)).toBeUndefined();
    expect(await mongoDocument('RefreshToken', refreshToken)).toBeNull();
    expect(await provider.Grant.find(grantId)).toBeUndefined();
    expect(await mongoDocument('Grant', grantId)).toBeNull();
  });

  it('a consume lost to a parallel one is InvalidGrant through the library model too', async () => {
    const { code } = await issueCode();
    const [a, b] = await Promise.all([provider.AuthorizationCode.find(code), provider.AuthorizationCode.find(code)]);
    if (!a || !b) throw new Error('code not found');
    await a.consume();
    await expect(b.consume()).rejects.toBeInstanceOf(errors.InvalidGrant);
  });
});
