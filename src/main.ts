import { ensureDevTrustFramework } from './config/dev-setup.ts';
import { ConfigError, loadConfig } from './config/environment.ts';
import { initialiseProductionIndexes } from './consent/production-stores.ts';
import { startServer } from './server.ts';

/**
 * `npm start`: serve the issuer on the embedded store. On a fresh checkout it first makes the
 * dev trust framework (a local Client CA and a server certificate) in DATA_DIR/pki.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const { created } = await ensureDevTrustFramework(config);
  if (created.length) console.log(`created a dev trust framework in ${config.dataDir}/pki (${created.join(', ')})`);
  if (config.storage === 'mongo' && process.env.NODE_ENV !== 'production') {
    // In dev, `npm start` creates the indexes itself; in production run `npm run cli -- db init`.
    await initialiseProductionIndexes(config);
  }
  const server = await startServer(config);
  console.log(`Perseus authorization server: issuer ${config.issuer} (public, port ${server.publicPort}), mTLS ${config.mtlsOrigin} (port ${server.mtlsPort}), data in ${config.dataDir}`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1); // a second signal forces exit
    stopping = true;
    console.log(`${signal}: closing listeners and stores`);
    server.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err: unknown) => {
  // Bad configuration is one line naming the variable; anything else is one line too.
  const message = err instanceof ConfigError ? `configuration error: ${err.message}` : `cannot start: ${(err as Error)?.message ?? String(err)}`;
  console.error(message);
  process.exit(1);
});
