import net from 'node:net';

import { loadConfig } from '../../src/config/environment.ts';
import { silentSink, stdoutSink, type LogSink } from '../../src/http/request-log.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import type { TestTrustFramework } from './trust-framework.ts';

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
