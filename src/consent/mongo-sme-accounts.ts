/**
 * SmeAccountStore on MongoDB, behaving like SmeAccounts (sme-accounts.ts). Every uniqueness rule
 * is a unique `_id` (atomic on FerretDB v1 and MongoDB, and in force before any index exists):
 *
 * - `sme_organisations`      `{ _id: 'org_…', name, createdAt }`
 * - `sme_organisation_names` `{ _id: name, organisationId }`: "the organisation of that name";
 *                            the first insert wins, so two addSme calls racing on a new name
 *                            share one organisation.
 * - `sme_users`              `{ _id: lower-cased email, id: 'usr_…', organisationId, passwordHash,
 *                            createdAt }`: one user per email. Only the scrypt hash is stored.
 * - `sme_meters`             `{ _id: claimKey(organisationId, identifier), id: 'mtr_…', organisationId,
 *                            identifier, fuel, outcode, ownershipEvidence }`: first insert wins.
 * - `sme_client_accounts`    `{ _id: claimKey(organisationId, clientId), accountId, organisationId,
 *                            clientId }`: the first identifier a client was given stays its identifier.
 * - `sme_account_ids`        `{ _id: accountId, organisationId, clientId }`: the same, keyed by the
 *                            identifier, so that resolveAccount (every token request) reads by `_id`
 *                            (FerretDB v1 decodes the whole collection for any other filter).
 *                            Written after the claim; a missing one is restored from it.
 *
 * No transactions: addSme checks the email first, then creates the organisation (or finds it),
 * then inserts the user. Only a lost race on the same new email (or a crash) can leave an
 * organisation without users, which is harmless (it is found again by its name).
 */
import { createHmac, randomBytes } from 'node:crypto';

import type { Connection, mongo } from 'mongoose';

import { claimKey, domainCollections, insertClaim, isDuplicateKey, runMongo } from './mongo-common.ts';
import type { DomainCollections, MongoDomainOptions } from './mongo-common.ts';
import { decoyHash, hashPassword, verifyPassword } from './passwords.ts';
import { parseMeter, SmeAccountError } from './sme-accounts.ts';
import type { Meter, NewSme, Organisation, SmeAccountStore, SmeUser } from './sme-accounts.ts';

export type MongoSmeAccountsOptions = MongoDomainOptions;

interface OrganisationDoc { _id: string; name: string; createdAt: Date }
interface OrganisationNameDoc { _id: string; organisationId: string }
interface UserDoc { _id: string; id: string; organisationId: string; passwordHash: string; createdAt: Date }
interface MeterDoc { _id: string; id: string; organisationId: string; identifier: string; fuel: Meter['fuel']; outcode: string; ownershipEvidence: string }
interface ClientAccountDoc { _id: string; accountId: string; organisationId: string; clientId: string }
interface AccountIdDoc { _id: string; organisationId: string; clientId: string }

interface Collections {
  organisations: mongo.Collection<OrganisationDoc>;
  names: mongo.Collection<OrganisationNameDoc>;
  users: mongo.Collection<UserDoc>;
  meters: mongo.Collection<MeterDoc>;
  accounts: mongo.Collection<ClientAccountDoc>;
  accountIds: mongo.Collection<AccountIdDoc>;
}

// Same as sme-accounts.ts (not exported there).
const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url')}`;
const normaliseEmail = (email: string) => email.trim().toLowerCase();

const toOrganisation = (d: OrganisationDoc): Organisation => ({ id: d._id, name: d.name, createdAt: d.createdAt.toISOString() });
const toMeter = (d: MeterDoc): Meter => ({
  id: d.id, organisationId: d.organisationId, identifier: d.identifier, fuel: d.fuel, outcode: d.outcode, ownershipEvidence: d.ownershipEvidence,
});

export class MongoSmeAccounts implements SmeAccountStore {
  readonly #connection: Connection;
  readonly #names: DomainCollections;
  readonly #accountSecret: Buffer;

  constructor(connection: Connection, accountSecret: Buffer, options: MongoSmeAccountsOptions = {}) {
    this.#connection = connection;
    this.#accountSecret = accountSecret;
    this.#names = domainCollections(options.collectionPrefix);
  }

  #run<T>(operation: (c: Collections) => Promise<T>): Promise<T> {
    return runMongo(this.#connection, (db) =>
      operation({
        organisations: db.collection<OrganisationDoc>(this.#names.smeOrganisations),
        names: db.collection<OrganisationNameDoc>(this.#names.smeOrganisationNames),
        users: db.collection<UserDoc>(this.#names.smeUsers),
        meters: db.collection<MeterDoc>(this.#names.smeMeters),
        accounts: db.collection<ClientAccountDoc>(this.#names.smeClientAccounts),
        accountIds: db.collection<AccountIdDoc>(this.#names.smeAccountIds),
      }),
    );
  }

  async #organisationNamed(c: Collections, name: string, now: Date): Promise<Organisation> {
    let claim = await c.names.findOne({ _id: name });
    if (claim === null) {
      const candidate = { _id: name, organisationId: newId('org') };
      claim = (await insertClaim(c.names, candidate)) ? candidate : await c.names.findOne({ _id: name });
      if (claim === null) throw new Error('organisation name claim vanished');
    }
    // Created by the claimant, or here when the claimant stopped before it did.
    await c.organisations.updateOne({ _id: claim.organisationId }, { $setOnInsert: { name, createdAt: now } }, { upsert: true }).catch((error: unknown) => {
      // Two upserts of the same new _id: the other one inserted it.
      if (!isDuplicateKey(error)) throw error;
    });
    const org = await c.organisations.findOne({ _id: claim.organisationId });
    if (org === null) throw new Error('organisation vanished');
    return toOrganisation(org);
  }

  /** Adds a user; the organisation is created unless one of that name exists. */
  async addSme(input: NewSme): Promise<{ organisation: Organisation; user: SmeUser; meters: Meter[] }> {
    const email = normaliseEmail(input.email);
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) throw new SmeAccountError('bad_email', `"${input.email}" is not an email address`);
    if (input.password.length < 10) throw new SmeAccountError('weak_password', 'the password must have at least 10 characters');
    const meters = (input.meters ?? []).map(parseMeter);
    const passwordHash = await hashPassword(input.password);
    const now = new Date();
    const taken = () => new SmeAccountError('email_taken', `a user with email ${email} exists already`);

    return this.#run(async (c) => {
      if (await c.users.findOne({ _id: email }, { projection: { _id: 1 } })) throw taken();
      const organisation = await this.#organisationNamed(c, input.organisation, now);
      const user: SmeUser = { id: newId('usr'), organisationId: organisation.id, email };
      if (!(await insertClaim(c.users, { _id: email, id: user.id, organisationId: organisation.id, passwordHash, createdAt: now }))) throw taken();
      for (const m of meters) {
        await insertClaim(c.meters, {
          _id: claimKey(organisation.id, m.identifier), id: newId('mtr'), organisationId: organisation.id, identifier: m.identifier,
          fuel: m.fuel, outcode: m.outcode, ownershipEvidence: 'Registered by the operator for this organisation (CLI)',
        });
      }
      return { organisation, user, meters: await this.#metersOf(c, organisation.id) };
    });
  }

  /** The user for these credentials, or undefined. Takes as long for an unknown email as for a wrong password. */
  async authenticate(email: string, password: string): Promise<SmeUser | undefined> {
    const doc = await this.#run((c) => c.users.findOne({ _id: normaliseEmail(email) }));
    const ok = await verifyPassword(password, doc?.passwordHash ?? await decoyHash());
    if (!doc || !ok) return undefined;
    return { id: doc.id, organisationId: doc.organisationId, email: doc._id };
  }

  async organisation(id: string): Promise<Organisation | undefined> {
    const doc = await this.#run((c) => c.organisations.findOne({ _id: id }));
    return doc ? toOrganisation(doc) : undefined;
  }

  /** An organisation by its id or its exact name (for operator commands). */
  async findOrganisation(idOrName: string): Promise<Organisation | undefined> {
    return this.#run(async (c) => {
      const byId = await c.organisations.findOne({ _id: idOrName });
      if (byId) return toOrganisation(byId);
      const named = await c.names.findOne({ _id: idOrName });
      const doc = named ? await c.organisations.findOne({ _id: named.organisationId }) : null;
      return doc ? toOrganisation(doc) : undefined;
    });
  }

  async meters(organisationId: string): Promise<Meter[]> {
    return this.#run((c) => this.#metersOf(c, organisationId));
  }

  async #metersOf(c: Collections, organisationId: string): Promise<Meter[]> {
    return (await c.meters.find({ organisationId }).sort({ identifier: 1 }).toArray()).map(toMeter);
  }

  /** See SmeAccounts.accountFor: an HMAC of organisation and client under the server secret. */
  async accountFor(organisationId: string, clientId: string): Promise<string> {
    // The same derivation as SmeAccounts.accountFor (sme-accounts.ts): keep the two in step.
    const account = `acct_${createHmac('sha256', this.#accountSecret).update(`${organisationId}\n${clientId}`).digest('base64url').slice(0, 32)}`;
    return this.#run(async (c) => {
      const _id = claimKey(organisationId, clientId);
      if (await insertClaim(c.accounts, { _id, accountId: account, organisationId, clientId })) {
        await insertClaim(c.accountIds, { _id: account, organisationId, clientId });
        return account;
      }
      // The first identifier a client was given stays its identifier, even if the secret changed since.
      const first = await c.accounts.findOne({ _id });
      if (first === null) throw new Error('client account vanished');
      return first.accountId;
    });
  }

  /** Which organisation and client an opaque account identifier stands for. */
  async resolveAccount(accountId: string): Promise<{ organisationId: string; clientId: string } | undefined> {
    const doc = await this.#run(async (c) => {
      const byId = await c.accountIds.findOne({ _id: accountId });
      if (byId !== null) return byId;
      // Not there: its writer stopped after the claim, or the claim predates this collection.
      const claim = await c.accounts.findOne({ accountId });
      if (claim !== null) await insertClaim(c.accountIds, { _id: accountId, organisationId: claim.organisationId, clientId: claim.clientId });
      return claim;
    });
    return doc ? { organisationId: doc.organisationId, clientId: doc.clientId } : undefined;
  }
}
