/**
 * The PermissionStore contract: what every implementation (SQLite, MongoDB) must do. Each
 * `open()` gives two store instances on the same storage ("two server processes"); races are run
 * across both.
 */
import { randomBytes } from 'node:crypto';

import { beforeAll, describe, expect, it } from 'vitest';

import { permissionStatus } from '../../src/consent/permission-record.ts';
import type { NewGrant, PermissionStore } from '../../src/consent/permission-store.ts';
import { at, DAY, HOUR } from './support.ts';

export interface PermissionStoreHarness {
  /** Two instances on the same storage. */
  stores: [PermissionStore, PermissionStore];
}

const LICENSE_A = 'https://licenses.example/smart-meter-data/1.0';
const LICENSE_B = 'https://licenses.example/carbon-report/2.0';

const rid = (prefix: string) => `${prefix}_${randomBytes(9).toString('base64url')}`;

/** A grant for a fresh organisation (unless given), one year long from `at(ms)`. */
export function newGrant(overrides: Partial<NewGrant> = {}, ms = 0): NewGrant {
  return {
    organisationId: rid('org'),
    clientId: 'https://bank.example/app|with-a-bar',
    license: LICENSE_A,
    account: rid('acct'),
    grantId: rid('grant'),
    at: at(ms),
    expires: at(ms + 365 * DAY),
    dataAvailableFrom: at(ms - 365 * DAY),
    permissionTextSha256: 'a'.repeat(64),
    meters: ['mtr_1', 'mtr_2'],
    userId: rid('usr'),
    ...overrides,
  };
}

export function describePermissionStoreContract(name: string, open: () => Promise<PermissionStoreHarness>): void {
  describe(`PermissionStore contract: ${name}`, () => {
    let store: PermissionStore;
    let other: PermissionStore;

    beforeAll(async () => {
      [store, other] = (await open()).stores;
    });

    it('a first grant creates a record with every field, a stable evidence id and a "granted" event', async () => {
      const g = newGrant();
      const outcome = await store.recordGrant(g);
      expect(outcome.kind).toBe('granted');
      expect(outcome.replacedGrantId).toBeUndefined();
      const p = outcome.permission;
      expect(p).toEqual({
        id: expect.any(String), organisationId: g.organisationId, clientId: g.clientId, license: g.license, account: g.account,
        grantId: g.grantId, firstGranted: g.at, lastGranted: g.at, expires: g.expires, dataAvailableFrom: g.dataAvailableFrom,
        permissionTextSha256: g.permissionTextSha256, meters: g.meters, evidenceId: expect.stringMatching(/^[\w-]{32}$/),
      });
      expect(await other.byId(p.id)).toEqual(p);
      const history = await other.history(p.id);
      expect(history).toEqual([{
        permissionId: p.id, at: g.at, kind: 'granted', actor: g.userId,
        detail: { license: g.license, expires: g.expires.toISOString(), meters: g.meters, permissionTextSha256: g.permissionTextSha256, grantId: g.grantId },
      }]);
      expect(await store.byId('perm_unknown')).toBeUndefined();
      expect(await store.history('perm_unknown')).toEqual([]);
    });

    it('granting again renews the same record: new grant, dates and meters, "renewed" event, replacedGrantId', async () => {
      const first = newGrant();
      const created = (await store.recordGrant(first)).permission;
      const again = newGrant({ organisationId: first.organisationId, account: first.account, meters: ['mtr_3'], permissionTextSha256: 'b'.repeat(64) }, 30 * DAY);
      const outcome = await other.recordGrant(again);
      expect(outcome.kind).toBe('renewed');
      expect(outcome.replacedGrantId).toBe(first.grantId);
      expect(outcome.permission).toEqual({
        ...created, grantId: again.grantId, lastGranted: again.at, expires: again.expires, dataAvailableFrom: again.dataAvailableFrom,
        meters: ['mtr_3'], permissionTextSha256: 'b'.repeat(64),
      });
      expect(await store.byId(created.id)).toEqual(outcome.permission);
      const history = await store.history(created.id);
      expect(history.map((e) => e.kind)).toEqual(['granted', 'renewed']);
      expect(history[1].detail).toMatchObject({ grantId: again.grantId, previousExpires: first.expires.toISOString(), meters: ['mtr_3'] });
      expect(await store.byOrganisation(first.organisationId)).toEqual([outcome.permission]);
    });

    it('another license or client of the same organisation is another record', async () => {
      const g = newGrant();
      const a = (await store.recordGrant(g)).permission;
      const b = await store.recordGrant({ ...g, license: LICENSE_B, grantId: rid('grant') });
      const c = await store.recordGrant({ ...g, clientId: 'https://bank.example/app', grantId: rid('grant') });
      expect(b.kind).toBe('granted');
      expect(c.kind).toBe('granted');
      expect(new Set([a.id, b.permission.id, c.permission.id]).size).toBe(3);
      expect(await store.byOrganisation(g.organisationId)).toHaveLength(3);
    });

    it('after a withdrawal a new grant creates a NEW record; the old one stays revoked', async () => {
      const g = newGrant();
      const old = (await store.recordGrant(g)).permission;
      const withdrawn = await store.withdraw(old.id, at(DAY), 'sme', g.userId, 'changed my mind');
      expect(withdrawn?.changed).toBe(true);
      expect(withdrawn?.permission).toEqual({ ...old, revoked: at(DAY), revokedBy: 'sme', revokedReason: 'changed my mind' });

      const regrant = newGrant({ organisationId: g.organisationId, account: g.account }, 2 * DAY);
      const outcome = await other.recordGrant(regrant);
      expect(outcome.kind).toBe('granted');
      expect(outcome.replacedGrantId).toBeUndefined();
      expect(outcome.permission.id).not.toBe(old.id);
      expect(outcome.permission.revoked).toBeUndefined();
      expect(outcome.permission.evidenceId).toBe(old.evidenceId);

      const again = await store.byId(old.id);
      expect(again?.revoked).toEqual(at(DAY));
      expect(again?.grantId).toBe(g.grantId);
      expect((await store.history(old.id)).map((e) => e.kind)).toEqual(['granted', 'revoked']);
      // A third grant renews the new record, not the withdrawn one.
      const third = await store.recordGrant(newGrant({ organisationId: g.organisationId }, 3 * DAY));
      expect(third.kind).toBe('renewed');
      expect(third.permission.id).toBe(outcome.permission.id);
      expect(third.replacedGrantId).toBe(regrant.grantId);
      const listed = await store.byOrganisation(g.organisationId);
      expect(listed.map((p) => p.id)).toEqual([outcome.permission.id, old.id]);
    });

    it('20 parallel withdrawals (two instances): exactly one changes the record and writes one "revoked" event', async () => {
      const g = newGrant();
      const p = (await store.recordGrant(g)).permission;
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) =>
        (i % 2 ? other : store).withdraw(p.id, at(HOUR + i), i % 3 ? 'sme' : 'operator', `actor-${i}`, `reason ${i}`)));
      expect(results.filter((r) => r?.changed)).toHaveLength(1);
      const winner = results.find((r) => r?.changed)?.permission;
      for (const r of results) expect(r?.permission.revoked).toEqual(winner?.revoked);
      const history = await store.history(p.id);
      expect(history.filter((e) => e.kind === 'revoked')).toHaveLength(1);
      expect(history.find((e) => e.kind === 'revoked')?.at).toEqual(winner?.revoked);
      // Later withdrawals change nothing either.
      expect((await other.withdraw(p.id, at(DAY), 'client', 'c', 'late'))?.changed).toBe(false);
      expect((await store.byId(p.id))?.revokedReason).toBe(winner?.revokedReason);
      expect(await store.withdraw('perm_unknown', at(0), 'sme', 'x', 'y')).toBeUndefined();
    });

    it('10 parallel first grants of one organisation, client and license (two instances): one record, one "granted", the rest renewals', async () => {
      const base = newGrant();
      const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? other : store).recordGrant({ ...base, grantId: `${base.grantId}-${i}`, at: at(i), userId: `usr-${i}` })));
      expect(outcomes.filter((o) => o.kind === 'granted')).toHaveLength(1);
      expect(new Set(outcomes.map((o) => o.permission.id)).size).toBe(1);
      const records = await store.byOrganisation(base.organisationId);
      expect(records).toHaveLength(1);
      const history = await store.history(records[0].id);
      expect(history.map((e) => e.kind).sort()).toEqual(['granted', ...Array(9).fill('renewed')]);
      expect(history[0].kind).toBe('granted');
      // Every renewal replaced exactly one earlier grant: the grants form one chain.
      const replaced = outcomes.flatMap((o) => (o.replacedGrantId ? [o.replacedGrantId] : []));
      expect(new Set(replaced).size).toBe(9);
      expect(replaced).not.toContain(records[0].grantId);
    });

    it('parallel grants after a withdrawal create exactly one new record', async () => {
      const g = newGrant();
      const old = (await store.recordGrant(g)).permission;
      await store.withdraw(old.id, at(HOUR), 'sme', 'u', 'r');
      const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) =>
        (i % 2 ? other : store).recordGrant({ ...g, grantId: `${g.grantId}-${i}`, at: at(DAY + i) })));
      expect(outcomes.filter((o) => o.kind === 'granted')).toHaveLength(1);
      const records = await store.byOrganisation(g.organisationId);
      expect(records).toHaveLength(2);
      expect(records.filter((p) => permissionStatus(p, at(DAY + HOUR)) === 'active')).toHaveLength(1);
    });

    it('byGrantId finds the record through its old and its new grant id', async () => {
      const first = newGrant();
      const p = (await store.recordGrant(first)).permission;
      const renewal = newGrant({ organisationId: first.organisationId }, DAY);
      await store.recordGrant(renewal);
      const viaOld = await other.byGrantId(first.grantId);
      const viaNew = await other.byGrantId(renewal.grantId);
      expect(viaOld?.id).toBe(p.id);
      expect(viaNew).toEqual(viaOld);
      expect(viaNew?.grantId).toBe(renewal.grantId);
      expect(await store.byGrantId('grant_unknown')).toBeUndefined();
    });

    it('records token issues against the permission of the grant, capped at the permission expiry', async () => {
      const g = newGrant();
      const p = (await store.recordGrant(g)).permission;
      await other.recordTokenIssue(g.grantId, at(HOUR), at(2 * HOUR), 'token_issued', g.clientId);
      let read = await store.byId(p.id);
      expect(read?.tokenIssuedAt).toEqual(at(HOUR));
      expect(read?.tokenExpires).toEqual(at(2 * HOUR));
      await store.recordTokenIssue(g.grantId, at(3 * HOUR), at(1000 * DAY), 'token_refreshed', g.clientId);
      read = await store.byId(p.id);
      expect(read?.tokenIssuedAt).toEqual(at(3 * HOUR));
      expect(read?.tokenExpires).toEqual(g.expires);
      const history = await store.history(p.id);
      expect(history.map((e) => e.kind)).toEqual(['granted', 'token_issued', 'token_refreshed']);
      expect(history[1]).toEqual({ permissionId: p.id, at: at(HOUR), kind: 'token_issued', actor: g.clientId, detail: { tokenExpires: at(2 * HOUR).toISOString() } });
      await store.recordTokenIssue('grant_unknown', at(0), at(HOUR), 'token_issued', 'x');
    });

    it('refresh token links: first link wins, found by hash and by grant, and they survive withdrawal', async () => {
      const g = newGrant();
      const p = (await store.recordGrant(g)).permission;
      const links = [0, 1].map((i) => ({
        tokenHash: randomBytes(32).toString('base64url'), grantId: g.grantId, clientId: g.clientId, sealedToken: `sealed-${i}`,
        issuedAt: at(i * HOUR), expiresAt: at(DAY + i * HOUR),
      }));
      for (const link of links) await store.linkRefreshToken(link);
      await other.linkRefreshToken({ ...links[0], sealedToken: 'sealed-again', grantId: 'grant_other' });
      expect(await other.refreshTokenLink(links[0].tokenHash)).toEqual(links[0]);
      expect(await store.refreshTokenLink('nope')).toBeUndefined();
      await store.withdraw(p.id, at(2 * HOUR), 'sme', 'u', 'r');
      const ofGrant = await other.refreshTokensOfGrant(g.grantId);
      expect(ofGrant.sort((a, b) => a.issuedAt.getTime() - b.issuedAt.getTime())).toEqual(links);
      expect(await store.refreshTokensOfGrant('grant_other')).toEqual([]);
    });

    it('refreshTokenPermission gives a token\'s link and its grant\'s permission, as refreshTokenLink then byGrantId would', async () => {
      const g = newGrant();
      const p = (await store.recordGrant(g)).permission;
      const link = { tokenHash: randomBytes(32).toString('base64url'), grantId: g.grantId, clientId: g.clientId, sealedToken: 'sealed', issuedAt: at(HOUR), expiresAt: at(DAY) };
      await store.linkRefreshToken(link);
      await store.recordTokenIssue(g.grantId, at(HOUR), at(2 * HOUR), 'token_issued', g.clientId);
      expect(await other.refreshTokenPermission(link.tokenHash)).toEqual({ link, permission: await other.byGrantId(g.grantId) });
      expect((await other.refreshTokenPermission(link.tokenHash))?.permission?.tokenIssuedAt).toEqual(at(HOUR));
      // Withdrawn, the record is still given (the permission endpoint shows `revoked`).
      await store.withdraw(p.id, at(2 * HOUR), 'sme', 'u', 'r');
      expect((await other.refreshTokenPermission(link.tokenHash))?.permission?.revoked).toEqual(at(2 * HOUR));
      // A link whose grant has no permission: the link, and no permission.
      const orphan = { ...link, tokenHash: randomBytes(32).toString('base64url'), grantId: 'grant_without_permission' };
      await store.linkRefreshToken(orphan);
      expect(await other.refreshTokenPermission(orphan.tokenHash)).toEqual({ link: orphan, permission: undefined });
      expect(await store.refreshTokenPermission('nope')).toBeUndefined();
    });

    it('recordExpiries records each passed expiry once, even with parallel callers, and again after a renewal', async () => {
      const g = newGrant({ expires: at(HOUR) });
      const p = (await store.recordGrant(g)).permission;
      const gone = newGrant({ expires: at(HOUR) });
      const revoked = (await store.recordGrant(gone)).permission;
      await store.withdraw(revoked.id, at(HOUR / 2), 'sme', 'u', 'r');

      expect((await store.recordExpiries(at(HOUR - 1))).map((x) => x.id)).not.toContain(p.id);
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? other : store).recordExpiries(at(2 * HOUR))));
      const recorded = results.flat();
      expect(recorded.filter((x) => x.id === p.id)).toHaveLength(1);
      expect(recorded.find((x) => x.id === p.id)).toEqual(p);
      expect(recorded.map((x) => x.id)).not.toContain(revoked.id);
      expect((await store.recordExpiries(at(3 * HOUR))).map((x) => x.id)).not.toContain(p.id);
      let history = await store.history(p.id);
      expect(history.filter((e) => e.kind === 'expired')).toEqual([{ permissionId: p.id, at: at(HOUR), kind: 'expired', actor: 'system', detail: { seenAt: at(2 * HOUR).toISOString() } }]);

      // A renewal of the expired record can expire again.
      const renewal = await other.recordGrant({ ...g, grantId: rid('grant'), at: at(4 * HOUR), expires: at(5 * HOUR) });
      expect(renewal.kind).toBe('renewed');
      expect((await store.recordExpiries(at(4 * HOUR + 1))).map((x) => x.id)).not.toContain(p.id);
      expect((await store.recordExpiries(at(6 * HOUR))).filter((x) => x.id === p.id)).toHaveLength(1);
      history = await store.history(p.id);
      expect(history.map((e) => e.kind)).toEqual(['granted', 'expired', 'renewed', 'expired']);
    });

    it('byEvidenceId lists both licenses of the same organisation and client (and nothing of other clients)', async () => {
      const g = newGrant();
      const a = (await store.recordGrant(g)).permission;
      const b = (await other.recordGrant({ ...g, license: LICENSE_B, grantId: rid('grant'), at: at(HOUR) })).permission;
      const elsewhere = (await store.recordGrant({ ...g, clientId: 'https://other.example/app', grantId: rid('grant') })).permission;
      expect(b.evidenceId).toBe(a.evidenceId);
      expect(elsewhere.evidenceId).not.toBe(a.evidenceId);
      const listed = await other.byEvidenceId(a.evidenceId);
      expect(listed.map((p) => p.license)).toEqual([LICENSE_A, LICENSE_B]);
      expect(listed[0]).toEqual(a);
      expect(await store.byEvidenceId('no-such-evidence')).toEqual([]);
    });

    it('the status is derived from the facts, never stored', async () => {
      const g = newGrant({ expires: at(DAY) });
      const p = (await store.recordGrant(g)).permission;
      expect(p).not.toHaveProperty('status');
      expect(permissionStatus(p, at(HOUR))).toBe('active');
      // The same stored record reads as expired later, without any write.
      const later = await store.byId(p.id);
      expect(later).toEqual(p);
      expect(permissionStatus(later!, at(2 * DAY))).toBe('expired');
      // Revocation never erases the expiry.
      const withdrawn = (await store.withdraw(p.id, at(2 * HOUR), 'client', g.clientId, 'revoked its token'))!.permission;
      expect(withdrawn.expires).toEqual(g.expires);
      expect(permissionStatus(withdrawn, at(3 * HOUR))).toBe('revoked');
      expect(permissionStatus(withdrawn, at(2 * DAY))).toBe('revoked');
    });
  });
}
