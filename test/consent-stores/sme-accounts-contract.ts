/**
 * The SmeAccountStore contract. `open()` gives fresh, empty storage; `withSecret(secret)` another
 * instance on that storage with its own account secret ("another process", or a rotated secret);
 * `dump()` everything stored, as text.
 */
import { randomBytes } from 'node:crypto';

import { beforeAll, describe, expect, it } from 'vitest';

import { SmeAccountError } from '../../src/consent/sme-accounts.ts';
import type { Organisation, SmeAccountStore, SmeUser } from '../../src/consent/sme-accounts.ts';

export interface SmeAccountsHarness {
  store: SmeAccountStore;
  withSecret(secret: Buffer): SmeAccountStore;
  dump(): Promise<string>;
}

const PASSWORD = 'correct horse battery staple';

async function errorCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(SmeAccountError);
    return (error as SmeAccountError).code;
  }
  return 'resolved';
}

export function describeSmeAccountsContract(name: string, open: () => Promise<SmeAccountsHarness>): void {
  describe(`SmeAccountStore contract: ${name}`, () => {
    let h: SmeAccountsHarness;
    let accounts: SmeAccountStore;
    let alice: { organisation: Organisation; user: SmeUser };

    beforeAll(async () => {
      h = await open();
      accounts = h.store;
      alice = await accounts.addSme({ email: ' Alice@Bakery.example', password: PASSWORD, organisation: 'Acme Bakery Ltd', meters: ['1012345678901:sw1a', 'gas:1234567:M1'] });
    });

    it('adds an organisation, a user with a lower-cased email, and its meters', async () => {
      expect(alice.user).toEqual({ id: expect.stringMatching(/^usr_[\w-]{16}$/), organisationId: alice.organisation.id, email: 'alice@bakery.example' });
      expect(alice.organisation).toEqual({ id: expect.stringMatching(/^org_[\w-]{16}$/), name: 'Acme Bakery Ltd', createdAt: expect.any(String) });
      expect(new Date(alice.organisation.createdAt).toISOString()).toBe(alice.organisation.createdAt);
      expect(await accounts.organisation(alice.organisation.id)).toEqual(alice.organisation);
      expect(await accounts.organisation('org_unknown')).toBeUndefined();
      expect(await accounts.findOrganisation('Acme Bakery Ltd')).toEqual(alice.organisation);
      expect(await accounts.findOrganisation(alice.organisation.id)).toEqual(alice.organisation);
      expect(await accounts.findOrganisation('Nobody Ltd')).toBeUndefined();
    });

    it('keeps meters unique per organisation, sorted by identifier', async () => {
      const again = await accounts.addSme({ email: 'bob@bakery.example', password: PASSWORD, organisation: 'Acme Bakery Ltd', meters: ['1012345678901:SW1A', '2000000000001:E1'] });
      expect(again.organisation.id).toBe(alice.organisation.id);
      const meters = await accounts.meters(alice.organisation.id);
      expect(meters.map(({ identifier, fuel, outcode }) => ({ identifier, fuel, outcode }))).toEqual([
      { identifier: '1012345678901', fuel: 'electricity', outcode: 'SW1A' },
      { identifier: '1234567', fuel: 'gas', outcode: 'M1' },
      { identifier: '2000000000001', fuel: 'electricity', outcode: 'E1' },
      ]);
      expect(again.meters).toEqual(meters);
      for (const m of meters) {
        expect(m).toEqual({ id: expect.stringMatching(/^mtr_/), organisationId: alice.organisation.id, identifier: m.identifier, fuel: m.fuel, outcode: m.outcode, ownershipEvidence: expect.any(String) });
      }
      expect(await accounts.meters('org_unknown')).toEqual([]);
    });

    it('authenticates case-insensitively, and refuses a wrong password and an unknown email alike', async () => {
      const expected = { id: alice.user.id, organisationId: alice.organisation.id, email: 'alice@bakery.example' };
      expect(await accounts.authenticate('alice@bakery.example', PASSWORD)).toEqual(expected);
      expect(await h.withSecret(randomBytes(32)).authenticate('  ALICE@BAKERY.EXAMPLE ', PASSWORD)).toEqual(expected);
      expect(await accounts.authenticate('alice@bakery.example', `${PASSWORD}!`)).toBeUndefined();
      expect(await accounts.authenticate('alice@bakery.example', '')).toBeUndefined();
      expect(await accounts.authenticate('mallory@bakery.example', PASSWORD)).toBeUndefined();
    });

    it('spends a password check on an unknown email too (no account enumeration by timing)', async () => {
      const time = async (email: string) => {
        const start = performance.now();
        await accounts.authenticate(email, 'wrong password!');
        return performance.now() - start;
      };
      await time('warm-up@bakery.example');
      const known = Math.min(await time('alice@bakery.example'), await time('alice@bakery.example'));
      const unknown = Math.min(await time('nobody@bakery.example'), await time('nobody@bakery.example'));
      // scrypt dominates both (tens of ms); a skipped check would be ~100 times faster.
      expect(unknown).toBeGreaterThan(known / 3);
    });

    it('refuses a second user with the same email in another case, adding nothing', async () => {
      expect(await errorCode(accounts.addSme({ email: ' ALICE@bakery.EXAMPLE ', password: 'another password', organisation: 'Other Org' }))).toBe('email_taken');
      expect(await accounts.findOrganisation('Other Org')).toBeUndefined();
      expect(await accounts.authenticate('alice@bakery.example', 'another password')).toBeUndefined();
    });

    it('lets exactly one of two racing sign-ups with one email win; racing new organisations of one name are one', async () => {
      const results = await Promise.allSettled([
        accounts.addSme({ email: 'race@florist.example', password: PASSWORD, organisation: 'Race Florist' }),
        h.withSecret(randomBytes(32)).addSme({ email: 'RACE@florist.example', password: PASSWORD, organisation: 'Race Florist' }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect((failed.reason as SmeAccountError).code).toBe('email_taken');

      const orgs = await Promise.all([0, 1, 2].map((i) => (i % 2 ? h.withSecret(randomBytes(32)) : accounts)
        .addSme({ email: `user${i}@newco.example`, password: PASSWORD, organisation: 'NewCo Ltd' })));
      expect(new Set(orgs.map((o) => o.organisation.id)).size).toBe(1);
    });

    it('refuses a bad meter, a bad email and a short password', async () => {
      expect(await errorCode(accounts.addSme({ email: 'c@bakery.example', password: PASSWORD, organisation: 'O', meters: ['12:SW1A'] }))).toBe('bad_meter');
      expect(await errorCode(accounts.addSme({ email: 'not-an-email', password: PASSWORD, organisation: 'O' }))).toBe('bad_email');
      expect(await errorCode(accounts.addSme({ email: 'c@bakery.example', password: 'short', organisation: 'O' }))).toBe('weak_password');
      expect(await accounts.authenticate('c@bakery.example', PASSWORD)).toBeUndefined();
    });

    it('stores no password in clear', async () => {
      const dump = await h.dump();
      expect(dump).not.toContain(PASSWORD);
      expect(dump).not.toContain(Buffer.from(PASSWORD).toString('base64'));
      expect(dump).toMatch(/scrypt\$32768\$8\$1\$/);
    });

    it('accountFor: stable, per client and per organisation, opaque', async () => {
      const org = alice.organisation.id;
      const bank = await accounts.accountFor(org, 'https://bank.example/app');
      expect(bank).toMatch(/^acct_[\w-]{32}$/);
      expect(await accounts.accountFor(org, 'https://bank.example/app')).toBe(bank);
      const other = await accounts.addSme({ email: 'carol@flowers.example', password: PASSWORD, organisation: 'Flower Shop Ltd' });
      const ids = [bank, await accounts.accountFor(org, 'https://lender.example/app'), await accounts.accountFor(other.organisation.id, 'https://bank.example/app')];
      expect(new Set(ids).size).toBe(3);
      expect(bank).not.toContain(org.replace(/^org_/, ''));
      expect(bank).not.toContain('bank.example');
    });

    it('accountFor keeps the first identifier a client was given, even after the secret changed', async () => {
      const first = await accounts.accountFor(alice.organisation.id, 'https://stable.example/app');
      const rotated = h.withSecret(randomBytes(32));
      expect(await rotated.accountFor(alice.organisation.id, 'https://stable.example/app')).toBe(first);
      expect(await rotated.accountFor(alice.organisation.id, 'https://fresh.example/app')).not.toBe(await accounts.accountFor(alice.organisation.id, 'https://fresh-2.example/app'));
      const racing = await Promise.all([0, 1, 2, 3].map((i) => (i % 2 ? h.withSecret(randomBytes(32)) : accounts).accountFor(alice.organisation.id, 'https://race.example/app')));
      expect(new Set(racing).size).toBe(1);
    });

    it('resolveAccount maps an identifier back to its organisation and client', async () => {
      const account = await accounts.accountFor(alice.organisation.id, 'https://lender.example/app');
      expect(await h.withSecret(randomBytes(32)).resolveAccount(account)).toEqual({ organisationId: alice.organisation.id, clientId: 'https://lender.example/app' });
      expect(await accounts.resolveAccount('acct_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')).toBeUndefined();
    });
  });
}
