/**
 * The SmeSessionStore contract. `open()` gives a store on fresh storage and `dump()` everything
 * stored, as text (to check the session ids never appear in clear).
 */
import { describe, expect, it } from 'vitest';

import type { SmeSession, SmeSessionStore } from '../../src/consent/sme-sessions.ts';

export interface SmeSessionsHarness {
  store: SmeSessionStore;
  dump(): Promise<string>;
}

const session = (expiresAt: Date, n = 1): SmeSession => ({ userId: `usr_${n}`, organisationId: `org_${n}`, email: `user${n}@example.org`, expiresAt });

export function describeSmeSessionsContract(name: string, open: () => Promise<SmeSessionsHarness>): void {
  describe(`SmeSessionStore contract: ${name}`, () => {
    it('creates a session under a fresh random id and finds it until it expires', async () => {
      const { store } = await open();
      const now = Date.now();
      const expiresAt = new Date(now + 60 * 60_000);
      const id = await store.create(session(expiresAt));
      expect(id).toMatch(/^[\w-]{43}$/);
      expect(await store.create(session(expiresAt))).not.toBe(id);
      expect(await store.find(id, new Date(now))).toEqual(session(expiresAt));
      expect(await store.find(id, new Date(expiresAt.getTime() - 1))).toEqual(session(expiresAt));
      expect(await store.find(id, expiresAt)).toBeUndefined();
      expect(await store.find(id, new Date(expiresAt.getTime() + 1))).toBeUndefined();
      expect(await store.find(`${id}x`, new Date(now))).toBeUndefined();
      expect(await store.find('', new Date(now))).toBeUndefined();
    });

    it('forgets a session that has already ended', async () => {
      const { store } = await open();
      const id = await store.create(session(new Date(Date.now() - 1000)));
      expect(await store.find(id, new Date())).toBeUndefined();
    });

    it('destroys a session, and only that one', async () => {
      const { store } = await open();
      const expiresAt = new Date(Date.now() + 60_000);
      const [a, b] = [await store.create(session(expiresAt, 1)), await store.create(session(expiresAt, 2))];
      await store.destroy(a);
      await store.destroy(a);
      await store.destroy('no-such-session');
      expect(await store.find(a, new Date())).toBeUndefined();
      expect(await store.find(b, new Date())).toEqual(session(expiresAt, 2));
    });

    it('never stores a session id in clear', async () => {
      const { store, dump } = await open();
      const ids = await Promise.all([1, 2, 3].map((n) => store.create(session(new Date(Date.now() + 60_000), n))));
      const text = await dump();
      expect(text).toContain('user2@example.org');
      for (const id of ids) expect(text).not.toContain(id);
    });
  });
}
