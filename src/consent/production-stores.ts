import { MongoOidcStore } from '../adapters/mongo-oidc-store.ts';
import { ensureOidcIndexes, openOidcStore } from '../adapters/open-store.ts';
import { RedisOidcStore } from '../adapters/redis-oidc-store.ts';
import { RoutedOidcStore } from '../adapters/routed-oidc-store.ts';
import type { OidcStore } from '../adapters/types.ts';
import type { ServerConfig } from '../config/environment.ts';
import type { ServerKeys } from '../provider/keys.ts';
import type { DomainStores } from './domain.ts';
import { MongoAuditLog } from './mongo-audit-log.ts';
import { ensureDomainIndexes } from './mongo-domain-indexes.ts';
import { MongoOutboxStore } from './mongo-outbox.ts';
import { MongoPermissionStore } from './mongo-permission-store.ts';
import { MongoSmeAccounts } from './mongo-sme-accounts.ts';
import { RedisSmeSessionStore } from './redis-sme-sessions.ts';

/**
 * The production pair: MongoDB for records (permissions and their history, audit log, outbox,
 * SME accounts) and the durable oidc-provider models; Redis for sessions and short-lived
 * artefacts. The domain stores share the oidc-provider store's connections.
 */
function connectionsOf(store: OidcStore): { mongo: MongoOidcStore; redis: RedisOidcStore } {
  const stores = store instanceof RoutedOidcStore ? store.stores : [store];
  const mongo = stores.find((s): s is MongoOidcStore => s instanceof MongoOidcStore);
  const redis = stores.find((s): s is RedisOidcStore => s instanceof RedisOidcStore);
  if (!mongo || !redis) throw new Error('STORAGE=mongo needs both a MongoDB and a Redis store');
  return { mongo, redis };
}

export async function productionStores(config: ServerConfig, keys: ServerKeys): Promise<DomainStores> {
  const oidcStore = await openOidcStore({ storage: 'mongo', mongodbUri: config.mongodbUri!, redisUrl: config.redisUrl!, connectTimeoutMs: config.storeTimeoutMs });
  const { mongo, redis } = connectionsOf(oidcStore);
  const connection = mongo.connection;
  return {
    oidcStore,
    smeAccounts: new MongoSmeAccounts(connection, keys.accountSecret),
    permissionStore: new MongoPermissionStore(connection),
    audit: new MongoAuditLog(connection),
    outboxStore: new MongoOutboxStore(connection),
    sessions: new RedisSmeSessionStore(redis.client),
    close: () => oidcStore.close(),
  };
}

/** `db init`: every index of the production stores, created once per deployment (never at request time). */
export async function initialiseProductionIndexes(config: ServerConfig): Promise<string[]> {
  const oidcStore = await openOidcStore({ storage: 'mongo', mongodbUri: config.mongodbUri!, redisUrl: config.redisUrl!, connectTimeoutMs: config.storeTimeoutMs });
  try {
    const oidc = await ensureOidcIndexes(oidcStore);
    const domain = await ensureDomainIndexes(connectionsOf(oidcStore).mongo.connection);
    return [...oidc.flatMap((r) => r.collections.map((c) => `${c}${r.ttlIndexes ? '' : ' (no TTL index: purged periodically)'}`)), ...domain.indexes];
  } finally {
    await oidcStore.close();
  }
}
