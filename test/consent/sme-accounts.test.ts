import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { verifyPassword } from '../../src/consent/passwords.ts';
import { SmeAccountError, SmeAccounts, parseMeter, type Organisation, type SmeUser } from '../../src/consent/sme-accounts.ts';

const PASSWORD = 'correct horse battery staple';

let db: DatabaseSync;
let accounts: SmeAccounts;
let alice: { organisation: Organisation; user: SmeUser };

beforeAll(async () => {
  db = openSqliteDatabase(':memory:');
  accounts = new SmeAccounts(db, randomBytes(32));
  alice = await accounts.addSme({ email: 'Alice@Bakery.example', password: PASSWORD, organisation: 'Acme Bakery Ltd', meters: ['1012345678901:sw1a', 'gas:1234567:M1'] });
});
afterAll(() => db.close());

async function errorCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(SmeAccountError);
    return (error as SmeAccountError).code;
  }
  return 'resolved';
}

describe('SmeAccounts.addSme', () => {
  it('stores a scrypt hash of the password, never the password itself', async () => {
    const rows = db.prepare('SELECT * FROM sme_user').all() as Array<Record<string, unknown>>;
    expect(rows).toHaveLength(1);
    const hash = String(rows[0].password_hash);
    expect(hash).toMatch(/^scrypt\$32768\$8\$1\$[\w-]{22}\$[\w-]{43}$/);
    expect(await verifyPassword(PASSWORD, hash)).toBe(true);
    const everything = JSON.stringify(rows);
    expect(everything).not.toContain(PASSWORD);
    expect(everything).not.toContain(Buffer.from(PASSWORD).toString('base64'));
  });

  it('salts each hash: the same password for two users gives two different hashes', async () => {
    const bob = await accounts.addSme({ email: 'bob@bakery.example', password: PASSWORD, organisation: 'Acme Bakery Ltd' });
    const hashes = db.prepare('SELECT password_hash AS h FROM sme_user WHERE id IN (?, ?)').all(alice.user.id, bob.user.id) as Array<{ h: string }>;
    expect(hashes).toHaveLength(2);
    expect(hashes[0].h).not.toBe(hashes[1].h);
    // Same organisation name: the existing organisation is reused.
    expect(bob.organisation.id).toBe(alice.organisation.id);
  });

  it('stores the email lower-cased and trimmed', async () => {
    expect(alice.user.email).toBe('alice@bakery.example');
    expect(db.prepare('SELECT email FROM sme_user WHERE id = ?').get(alice.user.id)).toEqual({ email: 'alice@bakery.example' });
  });

  it('records the meters given, electricity by default and gas when prefixed, with upper-case outcodes', async () => {
    expect((await accounts.meters(alice.organisation.id)).map(({ identifier, fuel, outcode }) => ({ identifier, fuel, outcode }))).toEqual([
      { identifier: '1012345678901', fuel: 'electricity', outcode: 'SW1A' },
      { identifier: '1234567', fuel: 'gas', outcode: 'M1' },
    ]);
  });

  it('refuses a second user with the same email in another case, adding nothing', async () => {
    const before = db.prepare('SELECT COUNT(*) AS n FROM organisation').get();
    expect(await errorCode(accounts.addSme({ email: ' ALICE@bakery.EXAMPLE ', password: 'another password', organisation: 'Other Org' }))).toBe('email_taken');
    expect(db.prepare('SELECT COUNT(*) AS n FROM organisation').get()).toEqual(before);
    expect(await accounts.authenticate('alice@bakery.example', 'another password')).toBeUndefined();
  });

  it('refuses a bad meter, a bad email and a short password', async () => {
    expect(await errorCode(accounts.addSme({ email: 'c@bakery.example', password: PASSWORD, organisation: 'O', meters: ['12:SW1A'] }))).toBe('bad_meter');
    expect(await errorCode(accounts.addSme({ email: 'not-an-email', password: PASSWORD, organisation: 'O' }))).toBe('bad_email');
    expect(await errorCode(accounts.addSme({ email: 'c@bakery.example', password: 'short', organisation: 'O' }))).toBe('weak_password');
    expect(db.prepare('SELECT COUNT(*) AS n FROM sme_user WHERE email = ?').get('c@bakery.example')).toEqual({ n: 0 });
  });
});

describe('parseMeter', () => {
  it('reads MPAN:OUTCODE and gas:MPRN:OUTCODE', async () => {
    expect(parseMeter('1012345678901:SW1A')).toEqual({ fuel: 'electricity', identifier: '1012345678901', outcode: 'SW1A' });
    expect(parseMeter('gas:1234567:m1')).toEqual({ fuel: 'gas', identifier: '1234567', outcode: 'M1' });
  });

  it('refuses specs that are not a meter', async () => {
    for (const spec of ['', '1012345678901', '12:SW1A', '1012345678901:SW1A 1AA', 'water:1234567:M1', '10123456789012:SW1A', 'abcdefg:SW1A']) {
      expect(() => parseMeter(spec), spec).toThrow(SmeAccountError);
    }
  });
});

describe('SmeAccounts.authenticate', () => {
  it('returns the user for the right password', async () => {
    expect(await accounts.authenticate('alice@bakery.example', PASSWORD)).toEqual({
      id: alice.user.id, organisationId: alice.organisation.id, email: 'alice@bakery.example',
    });
  });

  it('treats emails case-insensitively (and ignores surrounding spaces)', async () => {
    expect((await accounts.authenticate('ALICE@BAKERY.EXAMPLE', PASSWORD))?.id).toBe(alice.user.id);
    expect((await accounts.authenticate('  Alice@bakery.example ', PASSWORD))?.id).toBe(alice.user.id);
  });

  it('returns undefined for a wrong password', async () => {
    expect(await accounts.authenticate('alice@bakery.example', `${PASSWORD}!`)).toBeUndefined();
    expect(await accounts.authenticate('alice@bakery.example', PASSWORD.toUpperCase())).toBeUndefined();
    expect(await accounts.authenticate('alice@bakery.example', '')).toBeUndefined();
  });

  it('returns undefined for an unknown email, even with a password someone has', async () => {
    expect(await accounts.authenticate('mallory@bakery.example', PASSWORD)).toBeUndefined();
  });
});

describe('SmeAccounts.accountFor: the opaque account identifier a client knows an organisation by', () => {
  it('is stable for the same organisation and client', async () => {
    expect((await accounts.accountFor(alice.organisation.id, 'https://bank.example/app'))).toBe((await accounts.accountFor(alice.organisation.id, 'https://bank.example/app')));
  });

  it('differs across clients and across organisations', async () => {
    const other = await accounts.addSme({ email: 'carol@florist.example', password: PASSWORD, organisation: 'Flower Shop Ltd' });
    const ids = [
      (await accounts.accountFor(alice.organisation.id, 'https://bank.example/app')),
      (await accounts.accountFor(alice.organisation.id, 'https://lender.example/app')),
      (await accounts.accountFor(other.organisation.id, 'https://bank.example/app')),
    ];
    expect(new Set(ids).size).toBe(3);
  });

  it('reveals neither the organisation id nor the client id', async () => {
    const account = (await accounts.accountFor(alice.organisation.id, 'https://bank.example/app'));
    expect(account).toMatch(/^acct_[\w-]{32}$/);
    expect(account).not.toContain(alice.organisation.id);
    expect(account).not.toContain(alice.organisation.id.replace(/^org_/, ''));
    expect(account).not.toContain('bank.example');
  });

  it('depends on the server secret: another secret gives another identifier for a new pair', async () => {
    const elsewhere = new SmeAccounts(db, randomBytes(32));
    const here = (await accounts.accountFor(alice.organisation.id, 'https://secret.example/app'));
    const there = (await elsewhere.accountFor(alice.organisation.id, 'https://secret-two.example/app'));
    expect(there).not.toBe((await accounts.accountFor(alice.organisation.id, 'https://secret-two.example/app-other')));
    expect(here).not.toBe(there);
  });

  it('keeps the first identifier a client was given even after the server secret changed', async () => {
    const first = (await accounts.accountFor(alice.organisation.id, 'https://stable.example/app'));
    const rotated = new SmeAccounts(db, randomBytes(32));
    expect((await rotated.accountFor(alice.organisation.id, 'https://stable.example/app'))).toBe(first);
    expect((await rotated.resolveAccount(first))).toEqual({ organisationId: alice.organisation.id, clientId: 'https://stable.example/app' });
  });

  it('maps back to its organisation and client through resolveAccount', async () => {
    const account = (await accounts.accountFor(alice.organisation.id, 'https://lender.example/app'));
    expect((await accounts.resolveAccount(account))).toEqual({ organisationId: alice.organisation.id, clientId: 'https://lender.example/app' });
  });

  it('resolves nothing for an identifier it never issued', async () => {
    expect((await accounts.resolveAccount('acct_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'))).toBeUndefined();
  });

  it('keeps one row per organisation and client however often it is asked', async () => {
    for (let i = 0; i < 3; i++) (await accounts.accountFor(alice.organisation.id, 'https://repeat.example/app'));
    expect(db.prepare('SELECT COUNT(*) AS n FROM client_account WHERE client_id = ?').get('https://repeat.example/app')).toEqual({ n: 1 });
  });
});
