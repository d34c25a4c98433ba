import { describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { OutboxWorker, SqliteOutboxStore, type OutboxMessage } from '../../src/consent/outbox.ts';

function setup(deliver: (m: OutboxMessage) => Promise<void>, giveUpAfterMs = 60_000) {
  let clock = Date.UTC(2026, 5, 1);
  const store = new SqliteOutboxStore(openSqliteDatabase(':memory:'));
  const outcomes: string[] = [];
  const worker = new OutboxWorker(store, deliver, { pollMs: 60_000, initialBackoffMs: 1_000, maxBackoffMs: 8_000, giveUpAfterMs, now: () => new Date(clock) },
    (_m, outcome) => { outcomes.push(outcome); });
  return { store, worker, outcomes, tick: (ms: number) => { clock += ms; }, now: () => new Date(clock) };
}

const message = { kind: 'withdrawal' as const, target: 'https://bank.example/messages', body: { token: 't' }, idempotencyKey: 'withdrawal:abc' };

describe('the outbox delivers with backoff, once, and gives up in time', () => {
  it('keeps one message per idempotency key', async () => {
    const { store, now } = setup(async () => {});
    await store.enqueue(message, now());
    await store.enqueue({ ...message, body: { token: 'other' } }, now());
    expect(await store.all()).toHaveLength(1);
  });

  it('retries after a failure only once the backoff has passed, doubling it', async () => {
    let fail = 2;
    const attempts: number[] = [];
    const { store, worker, tick, now, outcomes } = setup(async () => { attempts.push(Date.now()); if (fail-- > 0) throw new Error('down'); });
    await store.enqueue(message, now());
    await worker.runOnce();
    expect(outcomes).toEqual(['retry']);
    tick(999);
    await worker.runOnce();
    expect(outcomes).toEqual(['retry']);
    tick(1);
    await worker.runOnce();
    expect(outcomes).toEqual(['retry', 'retry']);
    tick(1_999);
    await worker.runOnce();
    expect(outcomes).toEqual(['retry', 'retry']);
    tick(1);
    await worker.runOnce();
    expect(outcomes).toEqual(['retry', 'retry', 'delivered']);
    expect(await store.pending()).toBe(0);
    const [stored] = await store.all();
    expect(stored.attempts).toBe(3);
    expect(stored.deliveredAt).toBeInstanceOf(Date);
  });

  it('gives up once the next retry would fall past the configured time', async () => {
    const { store, worker, tick, now, outcomes } = setup(async () => { throw new Error('receiver answered 500'); }, 10_000);
    await store.enqueue(message, now());
    for (let i = 0; i < 10 && !outcomes.includes('given_up'); i++) {
      await worker.runOnce();
      tick(8_000);
    }
    expect(outcomes.at(-1)).toBe('given_up');
    const [stored] = await store.all();
    expect(stored.gaveUpAt).toBeInstanceOf(Date);
    expect(stored.lastError).toBe('receiver answered 500');
    expect(await store.pending()).toBe(0);
  });

  it('does not hand a leased message to a second worker pass', async () => {
    const { store, now } = setup(async () => {});
    await store.enqueue(message, now());
    expect(await store.claimDue(now(), 60_000, 10)).toHaveLength(1);
    expect(await store.claimDue(now(), 60_000, 10)).toHaveLength(0);
  });
});
