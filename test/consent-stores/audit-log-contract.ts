/**
 * The AuditLog contract. Each `open()` gives a fresh, empty log as two instances on the same
 * storage ("two server processes"), and a way to tamper with the stored events behind the log's
 * back.
 */
import { describe, expect, it } from 'vitest';

import { eventHash, GENESIS_HASH } from '../../src/consent/audit-log.ts';
import type { AuditEvent, AuditLog } from '../../src/consent/audit-log.ts';
import { at } from './support.ts';

export interface AuditLogHarness {
  logs: [AuditLog, AuditLog];
  /** Changes the actor of event `seq` in storage. */
  editActor(seq: number, actor: string): Promise<void>;
  /** Removes event `seq` from storage. */
  remove(seq: number): Promise<void>;
}

const event = (i: number, extra: Partial<AuditEvent> = {}): AuditEvent => ({
  kind: 'par', at: at(i * 1000), actor: `https://client-${i}.example/app`, client: `https://client-${i}.example/app`,
  license: 'https://licenses.example/l/1.0', ip: '192.0.2.1', userAgent: 'test-agent/1.0', detail: { n: i, nested: { list: [1, 'two', null] } }, ...extra,
});

export function describeAuditLogContract(name: string, open: () => Promise<AuditLogHarness>): void {
  describe(`AuditLog contract: ${name}`, () => {
    it('appends a hash chain that lists and verifies', async () => {
      const { logs: [log, other] } = await open();
      expect(await log.verify()).toEqual({ ok: true, events: 0 });
      await log.append(event(1));
      await other.append({ kind: 'sign_in', at: at(2000), actor: 'usr_1' });
      await log.append(event(3, { detail: { skipped: undefined, kept: 'yes' } }));
      expect(await other.verify()).toEqual({ ok: true, events: 3 });

      const listed = await other.list();
      expect(listed.map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(listed[0]).toEqual({ ...event(1), seq: 1, prevHash: GENESIS_HASH, hash: eventHash(GENESIS_HASH, 1, event(1)) });
      expect(listed[1]).toEqual({ kind: 'sign_in', at: at(2000), actor: 'usr_1', detail: {}, seq: 2, prevHash: listed[0].hash, hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
      expect(listed[2].prevHash).toBe(listed[1].hash);
      expect(listed[2].detail).toEqual({ kept: 'yes' });
      expect((await log.list({ afterSeq: 1, limit: 1 })).map((e) => e.seq)).toEqual([2]);
    });

    it('30 parallel appends from two instances: one chain without a fork or a gap', async () => {
      const { logs: [log, other] } = await open();
      await log.append(event(0));
      await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? other : log).append(event(i + 1))));
      expect(await log.verify()).toEqual({ ok: true, events: 31 });
      const listed = await other.list();
      expect(listed.map((e) => e.seq)).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));
      expect(new Set(listed.map((e) => e.detail?.n)).size).toBe(31);
    });

    it('detects an edited event', async () => {
      const { logs: [log, other], editActor } = await open();
      for (let i = 1; i <= 4; i += 1) await log.append(event(i));
      await editActor(3, 'mallory');
      expect(await other.verify()).toEqual({ ok: false, seq: 3, problem: 'its content was changed' });
    });

    it('detects a removed event', async () => {
      const { logs: [log], remove } = await open();
      for (let i = 1; i <= 4; i += 1) await log.append(event(i));
      await remove(2);
      expect(await log.verify()).toEqual({ ok: false, seq: 3, problem: 'event 2 is missing' });
    });
  });
}
