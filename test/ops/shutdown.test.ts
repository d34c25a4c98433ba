import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import { describe, expect, it } from 'vitest';

import { createShutdown, handleSignals } from '../../src/ops/shutdown.ts';

interface Held { release(): void }

/** A server whose /slow requests wait until released. */
async function slowServer() {
  const held: Held[] = [];
  let arrived: () => void = () => {};
  const server = http.createServer((req, res) => {
    if (req.url === '/slow') {
      held.push({ release: () => res.end('slow done') });
      arrived();
      return;
    }
    res.end('fast');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const nextArrival = () => new Promise<void>((resolve) => { arrived = resolve; });
  return { server, url, held, nextArrival };
}

describe('graceful shutdown', () => {
  it('stops accepting, waits for the request in flight, then runs the closers in order', async () => {
    const { server, url, held, nextArrival } = await slowServer();
    const steps: string[] = [];
    const shutdown = createShutdown({
      servers: [server], deadlineMs: 5_000,
      closers: [
        { name: 'outbox worker', close: async () => { steps.push('outbox'); } },
        { name: 'stores', close: async () => { await new Promise((r) => setTimeout(r, 20)); steps.push('stores'); } },
        { name: 'metrics server', close: () => { steps.push('metrics'); } },
      ],
    });
    // A keep-alive connection that served a request before, and stays idle.
    const agent = new http.Agent({ keepAlive: true });
    await fetch(`${url}/fast`).then((r) => r.text());

    const arrival = nextArrival();
    const slow = fetch(`${url}/slow`).then(async (r) => [r.status, await r.text()]);
    await arrival;
    expect(shutdown.inFlight).toBe(1);

    const done = shutdown.shutdown('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    expect(steps).toEqual([]); // closers wait for the request
    await expect(fetch(`${url}/fast`)).rejects.toThrow(); // no longer accepting

    held[0].release();
    expect(await slow).toEqual([200, 'slow done']);
    expect(await done).toEqual({ code: 0, cutRequests: 0, failedClosers: [] });
    expect(steps).toEqual(['outbox', 'stores', 'metrics']);
    expect(server.listening).toBe(false);
    agent.destroy();
  });

  it('cuts requests still running at the deadline, and a failing closer does not stop the next ones', async () => {
    const { server, url, nextArrival } = await slowServer();
    const steps: string[] = [];
    const lines: Array<Record<string, unknown>> = [];
    const shutdown = createShutdown({
      servers: [server], deadlineMs: 150, closerTimeoutMs: 100, log: (line) => void lines.push(line),
      closers: [
        { name: 'outbox worker', close: async () => { throw new Error('worker stuck'); } },
        { name: 'hangs', close: () => new Promise<void>(() => {}) },
        { name: 'stores', close: async () => { steps.push('stores'); } },
      ],
    });
    const arrival = nextArrival();
    const slow = fetch(`${url}/slow`).then(() => 'answered', () => 'cut');
    await arrival;
    const started = Date.now();
    const result = await shutdown.shutdown();
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(await slow).toBe('cut');
    expect(result).toEqual({ code: 1, cutRequests: 1, failedClosers: ['outbox worker', 'hangs'] });
    expect(steps).toEqual(['stores']);
    expect(lines.map((l) => l.msg)).toContain('shutdown deadline passed; cutting the remaining connections');
  });

  it('returns the shutdown under way when asked twice', async () => {
    const { server } = await slowServer();
    const shutdown = createShutdown({ servers: [server], closers: [] });
    const first = shutdown.shutdown();
    expect(shutdown.shutdown()).toBe(first);
    expect((await first).code).toBe(0);
  });
});

describe('signals', () => {
  it('the first signal shuts down and exits with its code; a second one exits(1) at once', async () => {
    const { server, url, held, nextArrival } = await slowServer();
    const signals = new EventEmitter();
    const exits: number[] = [];
    const closed: string[] = [];
    const shutdown = createShutdown({ servers: [server], closers: [{ name: 'stores', close: async () => { closed.push('stores'); } }] });
    const announced: string[] = [];
    const { done } = handleSignals(shutdown, { source: signals, exit: (code) => void exits.push(code), announce: (signal) => void announced.push(signal) });

    const arrival = nextArrival();
    const slow = fetch(`${url}/slow`).then((r) => r.text());
    await arrival;
    signals.emit('SIGTERM');
    await new Promise((r) => setTimeout(r, 50));
    expect(exits).toEqual([]);
    signals.emit('SIGINT');
    expect(exits).toEqual([1]); // forced
    expect(announced).toEqual(['SIGTERM']);

    held[0].release();
    await slow;
    expect(await done).toBe(0);
    expect(exits).toEqual([1, 0]);
    expect(closed).toEqual(['stores']);
  });
});
