import { existsSync } from 'node:fs';

import { ensureDevTrustFramework } from '../../src/config/dev-setup.ts';
import { loadConfig } from '../../src/config/environment.ts';
import { silentSink, stdoutSink } from '../../src/http/request-log.ts';
import { startServer } from '../../src/server.ts';
import { freePort, type TestServer } from '../support/server.ts';
import type { TestTrustFramework } from '../support/trust-framework.ts';

/**
 * startTestServer (test/support/server.ts) plus what `npm start` does first: the dev trust
 * framework's operator member certificate (DATA_DIR/pki/operator/client-bundle.pem), without
 * which the outbox cannot deliver withdrawal messages. startTestServer does not call
 * ensureDevTrustFramework, and the config it builds is only known inside it, so this is a
 * local copy rather than a change to the shared helper.
 */
export async function startServerWithOperator(tf: TestTrustFramework, env: Record<string, string> = {}): Promise<TestServer> {
  const [publicPort, mtlsPort] = [await freePort(), await freePort()];
  const issuer = `https://localhost:${publicPort}`;
  const mtlsOrigin = `https://localhost:${mtlsPort}`;
  const config = loadConfig({ ISSUER: issuer, MTLS_ORIGIN: mtlsOrigin, DATA_DIR: tf.dataDir, ...env });
  await ensureDevTrustFramework(config);
  if (!existsSync(config.operatorCertFile) || !existsSync(config.operatorKeyFile)) {
    throw new Error(`ensureDevTrustFramework made no operator certificate at ${config.operatorCertFile}`);
  }
  const server = await startServer(config, { log: process.env.TEST_LOG ? stdoutSink : silentSink });
  return Object.assign(server, { issuer, mtlsOrigin });
}
