import net from 'node:net';

import { loadConfig } from '../../src/config/environment.ts';
import { silentSink, stdoutSink, type LogSink } from '../../src/http/request-log.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import type { TestTrustFramework } from './trust-framework.ts';
import { initialiseProductionIndexes } from '../../src/consent/production-stores.ts';
import { mongoUriWithDatabase, startFerretDb, startRedis, uniqueDatabaseName, type RunningService } from './services.ts';

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface TestServer extends RunningServer {
  issuer: string;
  mtlsOrigin: string;
}

/** Starts the real server (both HTTPS listeners) on free ports with the given environment. */
export async function startTestServer(tf: TestTrustFramework, env: Record<string, string> = {}, options: { log?: LogSink; now?: () => Date; ports?: [number, number] } = {}): Promise<TestServer> {
  const [publicPort, mtlsPort] = options.ports ?? [await freePort(), await freePort()];
  const issuer = `https://localhost:${publicPort}`;
  const mtlsOrigin = `https://localhost:${mtlsPort}`;
  const config = loadConfig({ ISSUER: issuer, MTLS_ORIGIN: mtlsOrigin, DATA_DIR: tf.dataDir, ...env });
  const server = await startServer(config, { log: options.log ?? (process.env.TEST_LOG ? stdoutSink : silentSink), now: options.now });
  return Object.assign(server, { issuer, mtlsOrigin });
}

/**
 * The storage a test server runs on: the embedded store, or the production pair on real servers
 * (redis-server and FerretDB, or the MongoDB in MONGODB_URI), started here on free ports.
 */
export interface StorageUnderTest {
  kind: 'sqlite' | 'mongo';
  env: Record<string, string>;
  redis?: RunningService;
  mongo?: RunningService;
  stop(): Promise<void>;
}

export async function storageUnderTest(kind: 'sqlite' | 'mongo'): Promise<StorageUnderTest> {
  if (kind === 'sqlite') return { kind, env: {}, stop: async () => {} };
  const [redis, mongo] = await Promise.all([startRedis(), startFerretDb()]);
  const database = uniqueDatabaseName('e2e');
  return {
    kind, redis, mongo,
    env: { STORAGE: 'mongo', MONGODB_URI: mongoUriWithDatabase(mongo.url, database), REDIS_URL: redis.url },
    async stop() {
      await Promise.all([redis.stop(), mongo.stop()]);
    },
  };
}

/** Starts a server on the production pair after creating its indexes, as `db init` does. */
export async function startTestServerOn(storage: StorageUnderTest, tf: TestTrustFramework, env: Record<string, string> = {}, options: Parameters<typeof startTestServer>[2] = {}): Promise<TestServer> {
  const all = { ...storage.env, ...env };
  if (storage.kind === 'mongo') {
    await initialiseProductionIndexes(loadConfig({ ISSUER: 'https://localhost:1', MTLS_ORIGIN: 'https://localhost:2', DATA_DIR: tf.dataDir, ...all }));
  }
  return startTestServer(tf, all, options);
}
