/**
 * The benchmarks' MongoDB stand-in (bench/run.ts): FerretDB v1 on PostgreSQL, started by
 * test/support/services.ts. MongoOidcStore must pass the shared contract there too, and the
 * documents must really land in PostgreSQL: otherwise the `mongo` rows of a benchmark would
 * measure something else than they say.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MongoOidcStore } from '../../src/adapters/mongo-oidc-store.ts';
import { EXTERNAL_MONGODB_URI, postgresBinDir, SKIP_SERVICES, startFerretDb, startPostgres, uniqueDatabaseName } from '../support/services.ts';
import type { RunningService } from '../support/services.ts';
import { describeOidcAdapterContract, randomId, tokenPayload } from './oidc-adapter-contract.ts';

// With MONGODB_URI set, startFerretDb hands out that server instead: nothing of FerretDB to test.
describe.skipIf(SKIP_SERVICES || EXTERNAL_MONGODB_URI)('MongoOidcStore on FerretDB’s PostgreSQL backend (the benchmarks’ stand-in)', () => {
  let postgres: RunningService;
  let ferretdb: RunningService;
  const stores: MongoOidcStore[] = [];

  async function openStore(): Promise<MongoOidcStore> {
    const store = await MongoOidcStore.connect(ferretdb.url, { dbName: uniqueDatabaseName('pg'), connectTimeoutMs: 2000 });
    stores.push(store);
    return store;
  }

  beforeAll(async () => {
    postgres = await startPostgres();
    ferretdb = await startFerretDb({ postgresUrl: postgres.url, dependencies: [postgres] });
  });

  afterAll(async () => {
    await Promise.allSettled(stores.map((store) => store.close()));
    await ferretdb?.stop();
  });

  describeOidcAdapterContract('mongo (FerretDB on PostgreSQL)', async () => openStore());

  it('keeps the documents in PostgreSQL, and stopping FerretDB stops PostgreSQL too', async () => {
    const store = await openStore();
    const id = randomId();
    await store.adapterFor('AccessToken').upsert(id, tokenPayload(id), 600);
    const psql = (sql: string) => execFileSync(path.join(postgresBinDir()!, 'psql'), [postgres.url, '-Atc', sql], { encoding: 'utf8' }).trim();
    // FerretDB keeps each MongoDB database as a PostgreSQL schema, with one table per collection.
    const schema = store.connection.db!.databaseName;
    expect(psql(`SELECT count(*) FROM information_schema.tables WHERE table_schema = '${schema}'`)).not.toBe('0');

    await ferretdb.stop();
    expect(() => psql('SELECT 1')).toThrow();
  });
});
