/**
 * Worker thread for token-recording.test.ts: its own connection to the database file (like a
 * second server process), saving access tokens through TokenRecordingStore and appending audit
 * events directly, all at once with the other workers.
 * Loaded by Node directly (type stripping), not by vitest.
 */
import { randomBytes } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { accessTokenPayload, recordingDomain } from './token-recording-support.ts';

interface RecordingWorkerData { file: string; grantIds: string[]; clientId: string; rounds: number; workers: number; barrier: SharedArrayBuffer }

const { file, grantIds, clientId, rounds, workers, barrier } = workerData as RecordingWorkerData;
const db = openSqliteDatabase(file);
const { tokens, audit } = recordingDomain(db);
const accessTokens = tokens.adapterFor('AccessToken');
const arrivals = new Int32Array(barrier);

Atomics.add(arrivals, 0, 1);
Atomics.notify(arrivals, 0);
for (let seen = Atomics.load(arrivals, 0); seen < workers; seen = Atomics.load(arrivals, 0)) Atomics.wait(arrivals, 0, seen, 50);

for (let i = 0; i < rounds; i++) {
  const id = randomBytes(32).toString('base64url');
  await accessTokens.upsert(id, accessTokenPayload(id, grantIds[i % grantIds.length], clientId), 600);
  await audit.append({ kind: 'sign_in', at: new Date(), actor: `usr_${i}` });
}
db.close();
parentPort?.postMessage({ done: rounds });
