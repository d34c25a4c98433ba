import { createHmac, randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

import { migrate, preparedStatements, writeTransaction, type Prepared } from '../adapters/sqlite-database.ts';
import { decoyHash, hashPassword, verifyPassword } from './passwords.ts';

/**
 * SME accounts: an organisation (the Resource Consumer that grants permissions), the people who
 * sign in for it, and its meters. The organisation, not the person, holds a permission: any of
 * its users may grant or withdraw, and the audit records who did.
 */
export interface Organisation { id: string; name: string; createdAt: string }
export interface SmeUser { id: string; organisationId: string; email: string }
export interface Meter {
  id: string;
  organisationId: string;
  /** MPAN (electricity) or MPRN (gas): the meter's national identifier. */
  identifier: string;
  fuel: 'electricity' | 'gas';
  /** Postcode outcode, for regional grid intensity. */
  outcode: string;
  /** How the SME's ownership of the meter was established, shown on the evidence page. */
  ownershipEvidence: string;
}

export class SmeAccountError extends Error {
  readonly code: 'email_taken' | 'bad_meter' | 'bad_email' | 'weak_password';
  constructor(code: SmeAccountError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

export interface NewSme {
  email: string;
  password: string;
  organisation: string;
  /** Meters as "MPAN:OUTCODE" (electricity) or "gas:MPRN:OUTCODE". */
  meters?: string[];
}

const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url')}`;
const normaliseEmail = (email: string) => email.trim().toLowerCase();

export function parseMeter(spec: string): Pick<Meter, 'identifier' | 'fuel' | 'outcode'> {
  const parts = spec.split(':');
  const [fuel, identifier, outcode] = parts.length === 3 ? parts : ['electricity', parts[0], parts[1]];
  if ((fuel !== 'electricity' && fuel !== 'gas') || !/^\d{6,13}$/.test(identifier ?? '') || !/^[A-Z]{1,2}\d[A-Z\d]?$/i.test(outcode ?? '')) {
    throw new SmeAccountError('bad_meter', `meter "${spec}" must be MPAN:OUTCODE (e.g. 1012345678901:SW1A) or gas:MPRN:OUTCODE`);
  }
  return { fuel, identifier, outcode: outcode.toUpperCase() };
}

/**
 * The SME account store's operations; every method is async so that a networked store
 * (MongoDB) can stand behind the same interface as the embedded SQLite one.
 */
export interface SmeAccountStore {
  addSme(input: NewSme): Promise<{ organisation: Organisation; user: SmeUser; meters: Meter[] }>;
  authenticate(email: string, password: string): Promise<SmeUser | undefined>;
  organisation(id: string): Promise<Organisation | undefined>;
  findOrganisation(idOrName: string): Promise<Organisation | undefined>;
  meters(organisationId: string): Promise<Meter[]>;
  accountFor(organisationId: string, clientId: string): Promise<string>;
  resolveAccount(accountId: string): Promise<{ organisationId: string; clientId: string } | undefined>;
}

const ACCOUNT_OF = 'SELECT account_id FROM client_account WHERE organisation_id = ? AND client_id = ?';

export class SmeAccounts implements SmeAccountStore {
  readonly #db: DatabaseSync;
  readonly #sql: Prepared;
  readonly #accountSecret: Buffer;

  constructor(db: DatabaseSync, accountSecret: Buffer) {
    this.#db = db;
    this.#sql = preparedStatements(db);
    this.#accountSecret = accountSecret;
    migrate(db, 'sme-accounts-1', `
      CREATE TABLE organisation (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL);
      CREATE TABLE sme_user (id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL REFERENCES organisation(id),
        email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, created_at TEXT NOT NULL);
      CREATE TABLE meter (id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL REFERENCES organisation(id),
        identifier TEXT NOT NULL, fuel TEXT NOT NULL, outcode TEXT NOT NULL, ownership_evidence TEXT NOT NULL,
        UNIQUE (organisation_id, identifier));
      CREATE TABLE client_account (account_id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL REFERENCES organisation(id),
        client_id TEXT NOT NULL, UNIQUE (organisation_id, client_id));
    `);
  }

  /** Adds a user; the organisation is created unless one of that name exists. */
  async addSme(input: NewSme): Promise<{ organisation: Organisation; user: SmeUser; meters: Meter[] }> {
    const email = normaliseEmail(input.email);
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) throw new SmeAccountError('bad_email', `"${input.email}" is not an email address`);
    if (input.password.length < 10) throw new SmeAccountError('weak_password', 'the password must have at least 10 characters');
    const meters = (input.meters ?? []).map(parseMeter);
    const passwordHash = await hashPassword(input.password);
    const now = new Date().toISOString();

    const org = writeTransaction(this.#db, () => {
      if (this.#sql('SELECT 1 FROM sme_user WHERE email = ?').get(email)) {
        throw new SmeAccountError('email_taken', `a user with email ${email} exists already`);
      }
      let found = this.#sql('SELECT id, name, created_at AS createdAt FROM organisation WHERE name = ?').get(input.organisation) as Organisation | undefined;
      if (!found) {
        found = { id: newId('org'), name: input.organisation, createdAt: now };
        this.#sql('INSERT INTO organisation (id, name, created_at) VALUES (?, ?, ?)').run(found.id, found.name, now);
      }
      const user: SmeUser = { id: newId('usr'), organisationId: found.id, email };
      this.#sql('INSERT INTO sme_user (id, organisation_id, email, password_hash, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(user.id, found.id, email, passwordHash, now);
      const insertMeter = this.#sql(`INSERT INTO meter (id, organisation_id, identifier, fuel, outcode, ownership_evidence)
        VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (organisation_id, identifier) DO NOTHING`);
      for (const m of meters) {
        insertMeter.run(newId('mtr'), found.id, m.identifier, m.fuel, m.outcode, 'Registered by the operator for this organisation (CLI)');
      }
      return { organisation: found, user };
    });
    return { ...org, meters: this.#metersOf(org.organisation.id) };
  }

  /** The user for these credentials, or undefined. Takes as long for an unknown email as for a wrong password. */
  async authenticate(email: string, password: string): Promise<SmeUser | undefined> {
    const row = this.#sql('SELECT id, organisation_id AS organisationId, email, password_hash AS hash FROM sme_user WHERE email = ?')
      .get(normaliseEmail(email)) as (SmeUser & { hash: string }) | undefined;
    const ok = await verifyPassword(password, row?.hash ?? await decoyHash());
    if (!row || !ok) return undefined;
    return { id: row.id, organisationId: row.organisationId, email: row.email };
  }

  async organisation(id: string): Promise<Organisation | undefined> {
    return this.#sql('SELECT id, name, created_at AS createdAt FROM organisation WHERE id = ?').get(id) as Organisation | undefined;
  }

  /** An organisation by its id or its exact name (for operator commands). */
  async findOrganisation(idOrName: string): Promise<Organisation | undefined> {
    return this.#sql('SELECT id, name, created_at AS createdAt FROM organisation WHERE id = ? OR name = ? LIMIT 1').get(idOrName, idOrName) as Organisation | undefined;
  }

  async meters(organisationId: string): Promise<Meter[]> {
    return this.#metersOf(organisationId);
  }

  #metersOf(organisationId: string): Meter[] {
    return this.#sql(`SELECT id, organisation_id AS organisationId, identifier, fuel, outcode, ownership_evidence AS ownershipEvidence
      FROM meter WHERE organisation_id = ? ORDER BY identifier`).all(organisationId) as unknown as Meter[];
  }

  /**
   * The opaque account identifier a client application knows this organisation by. It is an
   * HMAC of the organisation and client under a server secret: it reveals nothing about the SME
   * and differs for every client, so two clients cannot join their records on it.
   */
  async accountFor(organisationId: string, clientId: string): Promise<string> {
    // The first identifier a client was given stays its identifier, even if the secret changed
    // since. Read first: after the first time this is a lookup, not a write.
    const existing = this.#sql(ACCOUNT_OF).get(organisationId, clientId) as { account_id: string } | undefined;
    if (existing) return existing.account_id;
    const account = `acct_${createHmac('sha256', this.#accountSecret).update(`${organisationId}\n${clientId}`).digest('base64url').slice(0, 32)}`;
    this.#sql('INSERT INTO client_account (account_id, organisation_id, client_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING')
      .run(account, organisationId, clientId);
    return (this.#sql(ACCOUNT_OF).get(organisationId, clientId) as { account_id: string }).account_id;
  }

  /** Which organisation and client an opaque account identifier stands for. */
  async resolveAccount(accountId: string): Promise<{ organisationId: string; clientId: string } | undefined> {
    return this.#sql('SELECT organisation_id AS organisationId, client_id AS clientId FROM client_account WHERE account_id = ?')
      .get(accountId) as { organisationId: string; clientId: string } | undefined;
  }
}
