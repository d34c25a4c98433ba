/**
 * Opening the configured OidcStore: the embedded SQLite store, or the production pair (MongoDB
 * for durable models, Redis for short-lived ones, routed by PRODUCTION_ROUTING).
 */
import type { DatabaseSync } from 'node:sqlite';

import { MongoOidcStore } from './mongo-oidc-store.ts';
import type { MongoIndexReport } from './mongo-oidc-store.ts';
import { RedisOidcStore } from './redis-oidc-store.ts';
import { modelsRoutedTo, productionRoutedStore, RoutedOidcStore } from './routed-oidc-store.ts';
import { SqliteOidcStore } from './sqlite-oidc-store.ts';
import type { OidcStore } from './types.ts';

/** The database of a `mongodb://` URI that names none. */
export const DEFAULT_DATABASE = 'perseus';

/** The database a MongoDB URI names ('' when none). */
function databaseNameOf(uri: string): string {
  const match = /^mongodb(?:\+srv)?:\/\/[^/?]*\/([^?]*)/i.exec(uri);
  return match?.[1] ?? '';
}

export type OpenOidcStoreOptions =
  | {
      storage: 'sqlite';
      /** The caller's handle: the store does not close it (it is shared with other domains). */
      db: DatabaseSync;
      clockToleranceSeconds?: number;
    }
  | {
      storage: 'mongo';
      /** `mongodb://` or `mongodb+srv://` URI; database `perseus` when the URI names none. */
      mongodbUri: string;
      /** `redis://[user:password@]host:port[/db]` or `rediss://` (TLS). */
      redisUrl: string;
      /** Start-up deadline per store, and how long an operation waits for a store that went away. Default 3000. */
      connectTimeoutMs?: number;
      clockToleranceSeconds?: number;
    };

/**
 * The OidcStore for `options.storage`.
 *
 * 'mongo' connects to MongoDB and Redis in parallel. If either is unreachable it rejects within
 * about connectTimeoutMs with a one-line StoreUnavailableError naming that store
 * (`redis at redis://127.0.0.1:6390 is unreachable: ...`), after closing the other connection.
 * Indexes are not created here: run ensureOidcIndexes() (the `db:init` command) once per deployment.
 */
export async function openOidcStore(options: OpenOidcStoreOptions): Promise<OidcStore> {
  if (options.storage === 'sqlite') {
    return new SqliteOidcStore(options.db, { closeDatabase: false, clockToleranceSeconds: options.clockToleranceSeconds });
  }
  if (options.storage !== 'mongo') {
    throw new TypeError(`unknown storage ${JSON.stringify((options as { storage?: unknown }).storage)}`);
  }
  const connectTimeoutMs = options.connectTimeoutMs ?? 3000;
  const [mongo, redis] = await Promise.allSettled([
    MongoOidcStore.connect(options.mongodbUri, {
      dbName: databaseNameOf(options.mongodbUri) === '' ? DEFAULT_DATABASE : undefined,
      connectTimeoutMs,
      models: modelsRoutedTo('mongo'),
      clockToleranceSeconds: options.clockToleranceSeconds,
    }),
    RedisOidcStore.connect(options.redisUrl, { connectTimeoutMs, clockToleranceSeconds: options.clockToleranceSeconds }),
  ]);
  if (mongo.status === 'rejected' || redis.status === 'rejected') {
    await Promise.allSettled([mongo, redis].map((result) => (result.status === 'fulfilled' ? result.value.close() : undefined)));
    throw mongo.status === 'rejected' ? mongo.reason : (redis as PromiseRejectedResult).reason;
  }
  return productionRoutedStore({ mongo: mongo.value, redis: redis.value });
}

/**
 * Create the indexes of every MongoDB store inside `store` (a routed store is searched). For
 * the `db:init` command; a no-op (empty array) for SQLite, whose schema migrates on open, and
 * for Redis, which needs none.
 */
export async function ensureOidcIndexes(store: OidcStore): Promise<MongoIndexReport[]> {
  const stores = store instanceof RoutedOidcStore ? store.stores : [store];
  const reports: MongoIndexReport[] = [];
  for (const candidate of stores) {
    if (candidate instanceof MongoOidcStore) {
      reports.push(await candidate.ensureIndexes());
    }
  }
  return reports;
}
