import cluster from 'node:cluster';

import { ensureDevTrustFramework } from './config/dev-setup.ts';
import { ConfigError, loadConfig, type ServerConfig } from './config/environment.ts';
import { initialiseProductionIndexes } from './consent/production-stores.ts';
import { startServer } from './server.ts';
import { clusterMetricsSource } from './ops/metrics.ts';
import { startMetricsServer, workersReadiness } from './ops/metrics-server.ts';
import { handleSignals } from './ops/shutdown.ts';

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
  console.log(`Perseus authorization server${who}: issuer ${config.issuer} (public, port ${server.publicPort}), mTLS ${config.mtlsOrigin} (port ${server.mtlsPort}), data in ${config.dataDir}`
    + (server.metricsPort !== undefined ? `, metrics and health on http://${config.metricsHost}:${server.metricsPort}` : ''));
  // SIGTERM/SIGINT: stop accepting, let requests in flight finish (SHUTDOWN_TIMEOUT), stop the
  // outbox worker, close the stores, exit 0 (1 if a request was cut or a step failed); a second
  // signal exits at once.
  handleSignals(server.shutdown, { announce: (signal) => console.log(`${signal}: closing listeners and stores${who}`) });
}

async function supervise(config: ServerConfig): Promise<void> {
  const workers = config.workers;
  let stopping = false;
  const fork = () => cluster.fork();
  for (let i = 0; i < workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    console.error(`worker ${worker.id} exited (${signal ?? code}); starting another`);
    fork();
  });
  // The metrics listener of a cluster lives in the primary: the sum of every worker's metrics.
  const metricsServer = config.metricsPort === undefined ? undefined : await startMetricsServer({
    host: config.metricsHost, port: config.metricsPort, registry: clusterMetricsSource(),
    ready: workersReadiness(() => Object.values(cluster.workers ?? {}), workers),
  });
  if (metricsServer) console.log(`metrics and health of the ${workers} workers on http://${config.metricsHost}:${metricsServer.port}`);
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill(signal);
    const wait = setInterval(() => {
      if (Object.keys(cluster.workers ?? {}).length > 0) return;
      clearInterval(wait);
      void (metricsServer?.close() ?? Promise.resolve()).then(() => process.exit(0));
    }, 100);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

async function main(): Promise<void> {
  const config = loadConfig();
  if (cluster.isPrimary) await prepare(config);
  if (cluster.isPrimary && config.workers > 1) await supervise(config);
  else await serve(config);
}

main().catch((err: unknown) => {
  // Bad configuration: one line per problem, every problem at once; anything else is one line.
  const message = err instanceof ConfigError
    ? err.issues.map((issue) => `configuration error: ${issue.message}`).join('\n')
    : `cannot start: ${(err as Error)?.message ?? String(err)}`;
  console.error(message);
  process.exit(1);
});
