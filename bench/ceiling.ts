/**
 * The ceiling: the least an HTTPS endpoint can do with the server's TLS and client-certificate
 * settings (TLS 1.3 only, requestCert with the Client CA list, the same server certificate), on
 * koa like the server, answering a fixed JSON body. Run in its own process by bench/run.ts; every
 * result is reported as a ratio to what this endpoint serves in the same run.
 *
 * Environment: CEILING_PORT (0 = any), CEILING_CERT, CEILING_KEY, CEILING_CA (files),
 * CEILING_PROCESSES (default 1; more runs node:cluster workers on one port, like the server's
 * WORKERS, so that a server with two workers is compared with a ceiling allowed both cores too).
 * Sends { type: 'ready', port } over IPC once every process listens.
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

import Koa from 'koa';

/** About the size of an introspection answer. */
const BODY = {
  active: true, client_id: 'https://directory.example/a/green-loans', exp: 1_900_000_000, iat: 1_899_999_400,
  iss: 'https://localhost:8443', aud: 'https://localhost:8443/data', scope: 'https://registry.core.trust.ib1.org/scheme/perseus/license/emissions-cap-fsp/2026-03-12',
  cnf: { 'x5t#S256': 'AA0Qiz_jVMtZhKE4leOi45SJoRooc8fR5xi3zY5FPNs' }, token_type: 'Bearer', sub: 'acct_ORjX94jzrj7P1y-iNXE7U5Fm1zm33aN3',
  account: 'acct_ORjX94jzrj7P1y-iNXE7U5Fm1zm33aN3', meters: [{ id: '1012345678901', type: 'electricity', ukPostcodeOutcode: 'SW1A' }],
  data_period: { from: '2025-11-01T00:00:00Z', to: '2026-11-01T00:00:00Z' }, permission_expires: '2027-11-27T17:26:25Z',
};

const processes = Math.max(1, Number(process.env.CEILING_PROCESSES ?? 1));
if (processes > 1 && cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < processes; i++) cluster.fork();
  cluster.on('listening', (_worker, address) => {
    if (++listening === processes) process.send?.({ type: 'ready', port: address.port });
  });
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  serve();
}

function serve(): void {
  const app = new Koa();
  app.use(async (ctx) => {
    for await (const _chunk of ctx.req) { /* read the form body, as the server does */ }
    ctx.set('Cache-Control', 'no-store');
    ctx.body = BODY;
  });

  const server = https.createServer({
    cert: readFileSync(process.env.CEILING_CERT!), key: readFileSync(process.env.CEILING_KEY!),
    minVersion: 'TLSv1.3', ca: readFileSync(process.env.CEILING_CA!, 'utf8'), requestCert: true, rejectUnauthorized: false,
  }, app.callback());
  server.listen(Number(process.env.CEILING_PORT ?? 0), '127.0.0.1', () => {
    if (cluster.isPrimary) process.send?.({ type: 'ready', port: (server.address() as AddressInfo).port });
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
