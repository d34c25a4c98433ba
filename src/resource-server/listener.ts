// An HTTPS listener for a data API that asks every client for its member certificate. The TLS
// layer only requests the certificate (rejectUnauthorized: false); the verdict is the guard's
// (pki/client-certificate.ts), so a missing or untrusted certificate gets an RFC 6750 answer
// instead of a dropped handshake. TLS 1.3, as the scheme asks of server-to-server endpoints.
import https from 'node:https';
import type { AddressInfo } from 'node:net';

import type Koa from 'koa';

export interface ResourceServerListenerOptions {
  /** The API's TLS server certificate and key (PEM). */
  cert: string | Buffer;
  key: string | Buffer;
  /** Client CA root(s) and known issuers (PEM): tells clients which certificate to present. */
  clientCa: string;
  port?: number;
  host?: string;
}

export interface RunningResourceServer {
  port: number;
  /** https://localhost:<port> */
  url: string;
  server: https.Server;
  close(): Promise<void>;
}

export async function listenResourceServer(app: Koa, options: ResourceServerListenerOptions): Promise<RunningResourceServer> {
  const server = https.createServer({
    cert: options.cert, key: options.key, ca: options.clientCa,
    requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3',
  }, app.callback());
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
  return {
    port, url: `https://localhost:${port}`, server,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
