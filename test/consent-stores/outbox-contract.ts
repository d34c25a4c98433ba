/**
 * The OutboxStore contract. Each `open()` gives a fresh, empty outbox as two instances on the
 * same storage ("two workers").
 */
import { describe, expect, it } from 'vitest';

import type { OutboxStore } from '../../src/consent/outbox.ts';
import { at, HOUR } from './support.ts';

export interface OutboxHarness {
  stores: [OutboxStore, OutboxStore];
}

export interface OutboxContractOptions {
  /**
   * Whether two workers claiming at once never both get one message. True for SQLite and
   * MongoDB; FerretDB v1 may rarely lease a message twice (harmless: delivery is idempotent),
   * so there only "every due message is claimed" is checked.
   */
  exclusiveLeases: boolean;
}

const message = (i: number, key = `withdrawal:token-${i}`) => ({
  kind: 'withdrawal' as const, target: `https://client-${i}.example/messages`, body: { token: `t${i}`, nested: { n: i } }, idempotencyKey: key,
});

export function describeOutboxContract(name: string, open: () => Promise<OutboxHarness>, options: OutboxContractOptions): void {
  describe(`OutboxStore contract: ${name}`, () => {
    it('keeps one message per idempotency key: the first one', async () => {
      const { stores: [outbox, other] } = await open();
      await outbox.enqueue(message(1, 'withdrawal:same'), at(0));
      await other.enqueue(message(2, 'withdrawal:same'), at(HOUR));
      await Promise.all([outbox.enqueue(message(3, 'withdrawal:race'), at(0)), other.enqueue(message(4, 'withdrawal:race'), at(0))]);
      const all = await other.all();
      expect(all).toHaveLength(2);
      expect(all.find((m) => m.idempotencyKey === 'withdrawal:same')).toEqual({
        id: expect.any(String), kind: 'withdrawal', target: 'https://client-1.example/messages', body: { token: 't1', nested: { n: 1 } },
        idempotencyKey: 'withdrawal:same', createdAt: at(0), attempts: 0, nextAttemptAt: at(0),
      });
      expect(new Set(all.map((m) => m.id)).size).toBe(2);
      expect(['t3', 't4']).toContain(all.find((m) => m.idempotencyKey === 'withdrawal:race')?.body.token);
      expect(await outbox.pending()).toBe(2);
    });

    it('claimDue leases due messages (oldest first, up to the limit) so no other worker sends them meanwhile', async () => {
      const { stores: [outbox, other] } = await open();
      await outbox.enqueue(message(1), at(2000));
      await outbox.enqueue(message(2), at(1000));
      await outbox.enqueue(message(3), at(5 * HOUR));
      expect(await outbox.claimDue(at(0), 60_000, 10)).toEqual([]);
      const first = await outbox.claimDue(at(3000), 60_000, 1);
      expect(first.map((m) => m.idempotencyKey)).toEqual(['withdrawal:token-2']);
      const second = await other.claimDue(at(3000), 60_000, 10);
      expect(second.map((m) => m.idempotencyKey)).toEqual(['withdrawal:token-1']);
      expect(await other.claimDue(at(4000), 60_000, 10)).toEqual([]);
      // The lease ends: due again, attempts untouched.
      const again = await outbox.claimDue(at(3000 + 60_001), 60_000, 10);
      expect(again.map((m) => m.idempotencyKey).sort()).toEqual(['withdrawal:token-1', 'withdrawal:token-2']);
      expect(again.every((m) => m.attempts === 0)).toBe(true);
      expect(await outbox.pending()).toBe(3);
    });

    it('records a delivery, a failure to retry, and giving up', async () => {
      const { stores: [outbox, other] } = await open();
      for (const i of [1, 2, 3]) await outbox.enqueue(message(i), at(0));
      const claimed = await outbox.claimDue(at(0), 60_000, 10);
      expect(claimed).toHaveLength(3);
      const [one, two, three] = ['withdrawal:token-1', 'withdrawal:token-2', 'withdrawal:token-3'].map((key) => claimed.find((m) => m.idempotencyKey === key)!);

      await other.markDelivered(one.id, at(1000));
      await other.markFailed(two.id, 'HTTP 503', at(HOUR), at(1000));
      await outbox.markFailed(three.id, 'HTTP 404', undefined, at(2000));
      const all = new Map((await outbox.all()).map((m) => [m.idempotencyKey, m]));
      expect(all.get(one.idempotencyKey)).toMatchObject({ deliveredAt: at(1000), attempts: 1 });
      expect(all.get(one.idempotencyKey)).not.toHaveProperty('lastError');
      expect(all.get(two.idempotencyKey)).toMatchObject({ attempts: 1, nextAttemptAt: at(HOUR), lastError: 'HTTP 503' });
      expect(all.get(two.idempotencyKey)).not.toHaveProperty('deliveredAt');
      expect(all.get(three.idempotencyKey)).toMatchObject({ attempts: 1, gaveUpAt: at(2000), lastError: 'HTTP 404' });
      expect(await other.pending()).toBe(1);

      // Only the one to retry comes back, and only once its retry time has come.
      expect(await outbox.claimDue(at(HOUR - 1), 60_000, 10)).toEqual([]);
      const retry = await outbox.claimDue(at(HOUR), 60_000, 10);
      expect(retry.map((m) => [m.idempotencyKey, m.attempts])).toEqual([[two.idempotencyKey, 1]]);
      await outbox.markDelivered(two.id, at(HOUR + 1));
      const delivered = (await outbox.all()).find((m) => m.id === two.id);
      expect(delivered).toMatchObject({ attempts: 2, deliveredAt: at(HOUR + 1) });
      expect(delivered).not.toHaveProperty('lastError');
      expect(await outbox.pending()).toBe(0);
      expect(await other.claimDue(at(10 * HOUR), 60_000, 10)).toEqual([]);
    });

    it(`two workers claiming at once: every due message is claimed${options.exclusiveLeases ? ', each by one worker' : ''}`, async () => {
      const { stores: [outbox, other] } = await open();
      for (let i = 0; i < 12; i += 1) await outbox.enqueue(message(i), at(i));
      const batches = await Promise.all([outbox.claimDue(at(HOUR), 60_000, 12), other.claimDue(at(HOUR), 60_000, 12), outbox.claimDue(at(HOUR), 60_000, 12)]);
      const keys = batches.flat().map((m) => m.idempotencyKey);
      expect(new Set(keys).size).toBe(12);
      if (options.exclusiveLeases) expect(keys).toHaveLength(12);
      for (const batch of batches) expect(new Set(batch.map((m) => m.id)).size).toBe(batch.length);
      expect(await other.claimDue(at(HOUR + 1), 60_000, 12)).toEqual([]);
    });
  });
}
