import cluster from 'node:cluster';

import { ensureDevTrustFramework } from './config/dev-setup.ts';
import { ConfigError, loadConfig, type ServerConfig } from './config/environment.ts';
import { initialiseProductionIndexes } from './consent/production-stores.ts';
import { startServer } from './server.ts';

/**
 * `npm start`: serve the issuer. On a fresh checkout it first makes the dev trust framework (a
 * local Client CA and a server certificate) in DATA_DIR/pki. With WORKERS > 1 the primary
 * process prepares everything once, then forks that many workers that share both listeners
 * (node:cluster) and the stores; a worker that dies is replaced.
 */
async function prepare(config: ServerConfig): Promise<void> {
  const { created } = await ensureDevTrustFramework(config);
  if (created.length) console.log(`created a dev trust framework in ${config.dataDir}/pki (${created.join(', ')})`);
  if (config.storage === 'mongo' && process.env.NODE_ENV !== 'production') {
    // In dev, `npm start` creates the indexes itself; in production run `npm run cli -- db init`.
    await initialiseProductionIndexes(config);
  }
}

async function serve(config: ServerConfig): Promise<void> {
  const server = await startServer(config);
  const who = cluster.isWorker ? ` (worker ${cluster.worker?.id})` : '';
  console.log(`Perseus authorization server${who}: issuer ${config.issuer} (public, port ${server.publicPort}), mTLS ${config.mtlsOrigin} (port ${server.mtlsPort}), data in ${config.dataDir}`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1); // a second signal forces exit
    stopping = true;
    console.log(`${signal}: closing listeners and stores${who}`);
    server.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

function supervise(workers: number): void {
  let stopping = false;
  const fork = () => cluster.fork();
  for (let i = 0; i < workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    console.error(`worker ${worker.id} exited (${signal ?? code}); starting another`);
    fork();
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
    const wait = setInterval(() => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
    }, 100);
    wait.unref();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

async function main(): Promise<void> {
  const config = loadConfig();
  if (cluster.isPrimary) await prepare(config);
  if (cluster.isPrimary && config.workers > 1) supervise(config.workers);
  else await serve(config);
}

main().catch((err: unknown) => {
  // Bad configuration is one line naming the variable; anything else is one line too.
  const message = err instanceof ConfigError ? `configuration error: ${err.message}` : `cannot start: ${(err as Error)?.message ?? String(err)}`;
  console.error(message);
  process.exit(1);
});
