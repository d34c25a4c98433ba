import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

import { createRootCa, issueServerLeaf } from '../../src/pki/certificate-authority.ts';

/**
 * A local HTTPS server that plays the IB1 Directory and Registry in tests. Its certificate is
 * issued for localhost by a throwaway CA (`ca`, to give the client under test); it listens on
 * 127.0.0.1 only, so nothing reaches the internet.
 *
 * Each path answers as scripted: a normal answer (with ETag / If-None-Match handled as a real
 * server does, and Cache-Control), a slow one, a failing one (any status, or the connection
 * reset), content that changes (set a new body and ETag), a permission text whose hash does not
 * match. Every request is recorded so tests can count what the client fetched.
 */
export interface Answer {
  /** Default 200. */
  status?: number;
  /** An object is sent as JSON. */
  body?: string | Buffer | object;
  /** Default application/json for objects, text/plain otherwise. */
  contentType?: string;
  /** Sent as ETag; a request whose If-None-Match names it gets 304 (with cacheControl). */
  etag?: string;
  /** Sent as Cache-Control, e.g. `max-age=60`. */
  cacheControl?: string;
  headers?: Record<string, string>;
  /** Wait this long before answering (to exceed a client's timeout). */
  delayMs?: number;
  /** Close the connection without answering (ECONNRESET at the client). */
  reset?: boolean;
  /** Send the body chunked, without Content-Length (so only a streaming size check can catch it). */
  chunked?: boolean;
  /** Send the headers and half the body, then nothing more (a deadline must cover the body too). */
  stallBody?: boolean;
}

export interface RecordedRequest {
  path: string;
  headers: IncomingHttpHeaders;
}

export type Route = Answer | ((request: RecordedRequest) => Answer);

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export class FakeIb1Services {
  readonly origin: string;
  /** PEM of the throwaway CA that issued the server certificate. */
  readonly ca: string;
  readonly requests: RecordedRequest[] = [];
  readonly #server: https.Server;
  readonly #routes = new Map<string, Route>();
  readonly #timers = new Set<NodeJS.Timeout>();

  private constructor(server: https.Server, origin: string, ca: string) {
    this.#server = server;
    this.origin = origin;
    this.ca = ca;
  }

  static async start(): Promise<FakeIb1Services> {
    const root = await createRootCa({ name: 'Fake IB1 Services Test CA' });
    const leaf = await issueServerLeaf(root, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    let self: FakeIb1Services | undefined;
    const server = https.createServer({ cert: leaf.bundlePem, key: leaf.keyPem }, (req, res) => self!.#answer(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    self = new FakeIb1Services(server, `https://localhost:${port}`, root.certificatePem);
    return self;
  }

  url(path: string): string {
    return `${this.origin}${path}`;
  }

  /** Scripts the answer of `path` (replacing any earlier one). */
  set(path: string, route: Route): void {
    this.#routes.set(path, route);
  }

  /** Serves `text` at `path` and returns its reference `<url>#sha256=<hex>` (of `hashOf`, default the text itself). */
  text(path: string, text: string, hashOf: string = text): string {
    this.set(path, { body: text, contentType: 'text/plain; charset=utf-8' });
    return `${this.url(path)}#sha256=${sha256Hex(hashOf)}`;
  }

  requestsTo(path: string): RecordedRequest[] {
    return this.requests.filter((r) => r.path === path);
  }

  count(path: string): number {
    return this.requestsTo(path).length;
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #answer(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
    const request: RecordedRequest = { path: req.url ?? '', headers: req.headers };
    this.requests.push(request);
    const route = this.#routes.get(request.path);
    const answer: Answer = typeof route === 'function' ? route(request) : route ?? { status: 404, body: { error: 'not found' } };
    const send = () => {
      if (answer.reset) {
        req.socket.destroy();
        return;
      }
      const headers: Record<string, string> = { ...answer.headers };
      if (answer.etag) headers.etag = answer.etag;
      if (answer.cacheControl) headers['cache-control'] = answer.cacheControl;
      const status = answer.status ?? 200;
      if (status === 200 && answer.etag && req.headers['if-none-match'] === answer.etag) {
        res.writeHead(304, headers).end();
        return;
      }
      const raw = answer.body;
      const isObject = raw !== undefined && typeof raw === 'object' && !Buffer.isBuffer(raw);
      const body = raw === undefined ? Buffer.alloc(0) : isObject ? Buffer.from(JSON.stringify(raw)) : Buffer.from(raw as string | Buffer);
      headers['content-type'] = answer.contentType ?? (isObject ? 'application/json' : 'text/plain; charset=utf-8');
      if (!answer.chunked) headers['content-length'] = String(body.length);
      res.writeHead(status, headers);
      if (answer.stallBody) {
        res.write(body.subarray(0, Math.floor(body.length / 2)));
      } else if (answer.chunked) {
        for (let i = 0; i < body.length; i += 1024) res.write(body.subarray(i, i + 1024));
        res.end();
      } else {
        res.end(body);
      }
    };
    if (answer.delayMs) {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        if (!res.destroyed) send();
      }, answer.delayMs);
      this.#timers.add(timer);
    } else {
      send();
    }
  }
}
