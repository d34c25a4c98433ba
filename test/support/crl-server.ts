import https from 'node:https';
import type { AddressInfo } from 'node:net';

import { createRootCa, issueServerLeaf } from '../../src/pki/certificate-authority.ts';

type Route = { kind: 'body'; body: Uint8Array | string; contentType: string } | { kind: 'status'; status: number } | { kind: 'hang' };

/**
 * A local HTTPS server publishing CRLs at paths whose content a test changes at will: serve, fail with a
 * status, or hang (accept and never answer). Its own CA is in `ca`, for the client to trust.
 */
export class CrlServer {
  readonly ca: string;
  readonly origin: string;
  readonly #server: https.Server;
  readonly #routes = new Map<string, Route>();
  readonly #hits = new Map<string, number>();

  private constructor(server: https.Server, ca: string, origin: string) {
    this.#server = server;
    this.ca = ca;
    this.origin = origin;
    server.on('request', (req, res) => {
      const path = new URL(req.url ?? '/', origin).pathname;
      this.#hits.set(path, (this.#hits.get(path) ?? 0) + 1);
      const route = this.#routes.get(path) ?? { kind: 'status', status: 404 };
      if (route.kind === 'hang') return;
      if (route.kind === 'status') {
        res.writeHead(route.status).end();
        return;
      }
      res.writeHead(200, { 'content-type': route.contentType }).end(route.body);
    });
  }

  static async start(): Promise<CrlServer> {
    const root = await createRootCa({ name: 'CRL Server Test CA', keyAlgorithm: 'P-256' });
    const leaf = await issueServerLeaf(root, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const server = https.createServer({ cert: leaf.certificatePem, key: leaf.keyPem });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    return new CrlServer(server, root.certificatePem, `https://127.0.0.1:${port}`);
  }

  url(path: string): string {
    return `${this.origin}${path}`;
  }

  /** Serves `body` at `path` (DER as application/pkix-crl, text as PEM) from now on. */
  serve(path: string, body: Uint8Array | string): void {
    this.#routes.set(path, { kind: 'body', body, contentType: typeof body === 'string' ? 'application/x-pem-file' : 'application/pkix-crl' });
  }

  fail(path: string, status = 503): void {
    this.#routes.set(path, { kind: 'status', status });
  }

  hang(path: string): void {
    this.#routes.set(path, { kind: 'hang' });
  }

  hits(path: string): number {
    return this.#hits.get(path) ?? 0;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}
