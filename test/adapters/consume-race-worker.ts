/**
 * Worker thread for sqlite.test.ts: opens its own connection to the database file, waits for
 * the others before each id, then races them to consume it.
 * Loaded by Node directly (type stripping), not by vitest.
 */
import { parentPort, workerData } from 'node:worker_threads';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { SqliteOidcStore } from '../../src/adapters/sqlite-oidc-store.ts';

interface RaceWorkerData {
  file: string;
  ids: string[];
  workers: number;
  /** Int32Array[1]: barrier arrivals, shared by every worker. */
  barrier: SharedArrayBuffer;
}

const { file, ids, workers, barrier } = workerData as RaceWorkerData;
const store = new SqliteOidcStore(openSqliteDatabase(file));
const adapter = store.adapterFor('AuthorizationCode');
const arrivals = new Int32Array(barrier);

/** Block until every worker reached round `round`, so all of them consume the same id at once. */
function awaitRound(round: number): void {
  const target = (round + 1) * workers;
  Atomics.add(arrivals, 0, 1);
  Atomics.notify(arrivals, 0);
  for (let seen = Atomics.load(arrivals, 0); seen < target; seen = Atomics.load(arrivals, 0)) {
    Atomics.wait(arrivals, 0, seen, 50);
  }
}

const results: string[] = [];
for (const [round, id] of ids.entries()) {
  awaitRound(round);
  try {
    await adapter.consume(id);
    results.push('ok');
  } catch (error) {
    results.push((error as { error?: string }).error ?? String(error));
  }
}
await store.close();
parentPort?.postMessage({ results });
