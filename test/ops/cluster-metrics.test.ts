import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { clusterMetricsSource } from '../../src/ops/metrics.ts';
import { startMetricsServer, workersReadiness } from '../../src/ops/metrics-server.ts';

describe('metrics of a cluster (WORKERS > 1)', () => {
  const workers: Worker[] = [];
  afterAll(() => {
    for (const worker of workers) worker.kill();
  });

  it('serves from the primary the sum of every worker\'s counters and the largest outbox depth', async () => {
    cluster.setupPrimary({ exec: path.join(import.meta.dirname, 'cluster-metrics-worker.ts'), execArgv: ['--disable-warning=ExperimentalWarning'], silent: true });
    const source = clusterMetricsSource();
    for (const [flows, pending] of [[2, 5], [3, 7]]) {
      const worker = cluster.fork({ TEST_FLOWS: String(flows), TEST_PENDING: String(pending) });
      workers.push(worker);
      await new Promise<void>((resolve, reject) => {
        worker.once('message', () => resolve());
        worker.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
      });
    }
    const server = await startMetricsServer({ port: 0, registry: source, ready: workersReadiness(() => workers, 2) });
    try {
      const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
      expect(text).toContain('perseus_oauth_flows_started_total 5');
      expect(text).toContain('perseus_outbox_pending 7');
      const ready = await fetch(`http://127.0.0.1:${server.port}/health/ready`);
      expect([ready.status, await ready.json()]).toEqual([200, { status: 'ready', workers: 2, expected: 2 }]);
    } finally {
      await server.close();
    }
  });
});
