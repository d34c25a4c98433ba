/**
 * The internal operations listener: `/metrics` (Prometheus text), `/health/live` and
 * `/health/ready`, on its OWN port, in plain HTTP.
 *
 * It is meant for the private network only (the Prometheus scraper, the orchestrator's probes):
 * bind it to 127.0.0.1 or a private address (METRICS_HOST), never publish the port through the
 * public load balancer. Metrics reveal traffic volumes, client application URLs are NOT in them
 * (see metrics.ts), but readiness details name CRL sources and store states. Plain HTTP because
 * probes and scrapers rarely speak mutual TLS, and the listeners that carry OAuth traffic stay
 * TLS-only.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';


import type { CrlSourceStatus } from '../pki/revocation-list-cache.ts';
import type { MetricsSource } from './metrics.ts';

export interface Readiness {
  ok: boolean;
  details: Record<string, unknown>;
}

export type ReadinessCheck = () => Promise<Readiness>;

export interface MetricsServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** A prom-client Registry (metrics.registry), or clusterMetricsSource() in a cluster primary. */
  registry: MetricsSource;
  ready: ReadinessCheck;
  /** A readiness check that has not answered after this long counts as not ready. Default 5000. */
  readyTimeoutMs?: number;
}

export interface MetricsServer {
  readonly port: number;
  readonly server: http.Server;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, status: number, type: string, body: string, head: boolean): void {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff' });
  res.end(head ? undefined : body);
}

const json = (res: http.ServerResponse, status: number, value: unknown, head: boolean) =>
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value), head);

async function readiness(check: ReadinessCheck, timeoutMs: number): Promise<Readiness> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Readiness>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, details: { error: `readiness check did not answer within ${timeoutMs} ms` } }), timeoutMs);
  });
  try {
    return await Promise.race([
      check().catch((err: unknown) => ({ ok: false, details: { error: (err as Error)?.message ?? String(err) } })),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry, ready } = options;
  const readyTimeoutMs = options.readyTimeoutMs ?? 5000;
  const server = http.createServer(async (req, res) => {
    const head = req.method === 'HEAD';
    const path = (req.url ?? '/').split('?', 1)[0];
    try {
      if (req.method !== 'GET' && !head) {
        res.setHeader('Allow', 'GET, HEAD');
        json(res, 405, { error: 'method not allowed' }, false);
        return;
      }
      if (path === '/metrics') {
        send(res, 200, registry.contentType, await registry.metrics(), head);
        return;
      }
      if (path === '/health/live') {
        json(res, 200, { status: 'live' }, head);
        return;
      }
      if (path === '/health/ready') {
        const verdict = await readiness(ready, readyTimeoutMs);
        json(res, verdict.ok ? 200 : 503, { status: verdict.ok ? 'ready' : 'not ready', ...verdict.details }, head);
        return;
      }
      json(res, 404, { error: 'not found' }, head);
    } catch (err) {
      if (!res.headersSent) json(res, 500, { error: (err as Error)?.message ?? 'error' }, head);
      else res.destroy();
    }
  });
  // Probes may keep connections open; they must not hold a shutdown up.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/**
 * The server's readiness, as the listeners' own /health/ready decides it: the store answers a
 * ping, and every CRL source (when CRLs are configured) holds a current CRL (ok or stale).
 */
export function readinessCheck(deps: { store: { ping(): Promise<void> }; revocation?: { status(): CrlSourceStatus[] } }): ReadinessCheck {
  return async () => {
    try {
      await deps.store.ping();
    } catch {
      return { ok: false, details: { store: 'unreachable' } };
    }
    const crl = deps.revocation?.status();
    if (crl && !crl.every((source) => source.state === 'ok' || source.state === 'stale')) return { ok: false, details: { store: 'ok', crl } };
    return { ok: true, details: { store: 'ok', ...(crl ? { crl } : {}) } };
  };
}

/**
 * The readiness of a cluster PRIMARY (it has no store of its own): ready while at least one
 * worker is connected. Each worker's own readiness stays on the listeners' /health/ready.
 */
export function workersReadiness(workers: () => Array<{ isConnected(): boolean } | undefined>, expected: number): ReadinessCheck {
  return async () => {
    const connected = workers().filter((worker) => worker?.isConnected()).length;
    return { ok: connected > 0, details: { workers: connected, expected } };
  };
}
