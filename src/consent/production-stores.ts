import { openOidcStore } from '../adapters/open-store.ts';
import type { ServerConfig } from '../config/environment.ts';
import type { ServerKeys } from '../provider/keys.ts';

/**
 * The production pair: MongoDB for records (permissions, audit, outbox, SME accounts) and the
 * durable oidc-provider models, Redis for sessions and short-lived artefacts.
 */
export async function productionStores(config: ServerConfig, _keys: ServerKeys): Promise<never> {
  const store = await openOidcStore({ storage: 'mongo', mongodbUri: config.mongodbUri!, redisUrl: config.redisUrl!, connectTimeoutMs: config.storeTimeoutMs });
  await store.close();
  throw new Error('STORAGE=mongo: the permission domain stores for MongoDB are not wired yet');
}
