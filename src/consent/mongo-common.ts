/**
 * What the MongoDB stores of the consent domain share: collection names, error mapping, claim
 * keys and the "run an operation against the connection" wrapper.
 *
 * The rule every store here follows (forced by FerretDB v1, kept for MongoDB):
 *
 * - A fact that must exist at most once is an INSERT of a document whose `_id` names the fact
 *   (a claim). Duplicate `_id` inserts are atomic on both servers; a duplicate-key error means
 *   somebody else recorded the fact first.
 * - Updates are never used to decide anything. FerretDB v1 applies an update by reading the
 *   matching documents and writing them back whole by `_id`: conditional updates are not atomic
 *   (several "winners"), and two concurrent updates of DIFFERENT fields of one document lose one
 *   of them ($inc too: 50 parallel `$inc: 1` gave 1). So a document is only ever updated where
 *   last-writer-wins of the whole document is harmless (one writer, or all writers writing the
 *   same fields).
 * - No transactions (FerretDB v1 has none; a standalone MongoDB neither). Multi-document steps are
 *   ordered so that a crash between them leaves a state the next call completes or ignores.
 * - No TTL or partial indexes (FerretDB v1 has neither); correctness never depends on an index:
 *   indexes (mongo-domain-indexes.ts) are for speed, and for uniqueness that `_id` already gives.
 *
 * The classification of driver errors mirrors src/adapters/mongo-oidc-store.ts (not exported
 * there); a later refactor could export it from one place.
 */
import type { Connection, mongo } from 'mongoose';

import { StoreUnavailableError } from '../adapters/types.ts';
import { isDuplicateKey, MONGO_STORE_NAME, toStoreError } from '../adapters/mongo-errors.ts';

export { isDuplicateKey, MONGO_STORE_NAME, toStoreError };


/** Write concern of the writes that record a decision (grant, withdrawal, audit events). */
export const DECISION_WRITE_CONCERN: mongo.WriteConcernSettings = { w: 'majority', wtimeoutMS: 5000 };

export interface MongoDomainOptions {
  /** Prefix of every collection name. Default '' (the OIDC store uses `oidc_`, so nothing collides). */
  collectionPrefix?: string;
}

/** Every collection the consent-domain MongoDB stores use. */
export function domainCollections(prefix = '') {
  return {
    permissions: `${prefix}permissions`,
    permissionCurrent: `${prefix}permission_current`,
    permissionEvents: `${prefix}permission_events`,
    permissionTokenEvents: `${prefix}permission_token_events`,
    permissionHeads: `${prefix}permission_heads`,
    permissionGrants: `${prefix}permission_grants`,
    evidenceLinks: `${prefix}evidence_links`,
    refreshTokenLinks: `${prefix}refresh_token_links`,
    auditEvents: `${prefix}audit_events`,
    auditHead: `${prefix}audit_head`,
    outbox: `${prefix}outbox`,
    smeOrganisations: `${prefix}sme_organisations`,
    smeOrganisationNames: `${prefix}sme_organisation_names`,
    smeUsers: `${prefix}sme_users`,
    smeMeters: `${prefix}sme_meters`,
    smeClientAccounts: `${prefix}sme_client_accounts`,
    smeAccountIds: `${prefix}sme_account_ids`,
  } as const;
}

export type DomainCollections = ReturnType<typeof domainCollections>;

/**
 * `a|b|c` with `%` and `|` escaped in each part, so two different tuples never give the same key
 * (client ids and licenses are URLs and could contain `|`).
 */
export function claimKey(...parts: string[]): string {
  return parts.map((part) => part.replaceAll('%', '%25').replaceAll('|', '%7C')).join('|');
}

// Errors: see src/adapters/mongo-errors.ts (shared with the oidc-provider store).

/**
 * Runs `operation` against the connection's database. No database (not connected yet, or
 * closed) and connection-level driver failures reject with StoreUnavailableError('mongo'); how
 * long the driver waits for a server that went away is the connection's serverSelectionTimeoutMS
 * (open-store.ts makes it short).
 */
export async function runMongo<T>(connection: Connection, operation: (db: mongo.Db) => Promise<T>): Promise<T> {
  const db = connection.db;
  if (db === undefined) {
    throw new StoreUnavailableError(MONGO_STORE_NAME, { cause: new Error('not connected') });
  }
  try {
    return await operation(db);
  } catch (error) {
    throw toStoreError(error);
  }
}

/** Inserts `doc`; true when inserted, false when a document with its `_id` exists already. */
export async function insertClaim<T extends mongo.Document>(
  collection: mongo.Collection<T>,
  doc: mongo.OptionalUnlessRequiredId<T>,
  options?: mongo.InsertOneOptions,
): Promise<boolean> {
  try {
    await collection.insertOne(doc, options);
    return true;
  } catch (error) {
    if (isDuplicateKey(error)) return false;
    throw error;
  }
}

/** Too many concurrent writers kept winning: give up rather than spin forever. */
export class ContentionError extends Error {
  constructor(what: string, attempts: number) {
    super(`${what}: gave up after ${attempts} attempts lost to concurrent writers`);
    this.name = 'ContentionError';
  }
}

/** A short random pause growing with the attempt, so racing writers spread out. */
export function backoff(attempt: number): Promise<void> {
  if (attempt < 3) return Promise.resolve();
  const ms = Math.random() * Math.min(50, attempt * 2);
  return new Promise((resolve) => setTimeout(resolve, ms));
}
