/**
 * The indexes of the consent-domain MongoDB stores (mongo-permission-store.ts,
 * mongo-audit-log.ts, mongo-outbox.ts, mongo-sme-accounts.ts). For the `db:init` command only,
 * never at request time. Idempotent.
 *
 * Correctness never depends on them: every "at most one" rule of those stores is a unique `_id`.
 * They make lookups fast, and the unique ones catch a bug that would store the same value
 * twice. Plain indexes only: FerretDB v1 has no TTL and no partial indexes.
 */
import type { Connection } from 'mongoose';

import { domainCollections, runMongo } from './mongo-common.ts';
import type { MongoDomainOptions } from './mongo-common.ts';

export interface DomainIndexReport {
  /** `<collection>.<index name>` for every index ensured, in creation order. */
  indexes: string[];
}

interface IndexSpec {
  collection: string;
  name: string;
  key: Record<string, 1 | -1>;
  unique?: boolean;
}

export function domainIndexSpecs(options: MongoDomainOptions = {}): IndexSpec[] {
  const n = domainCollections(options.collectionPrefix);
  return [
    // Permission store.
    { collection: n.permissionCurrent, name: 'key_generation', key: { key: 1, generation: -1 }, unique: true },
    { collection: n.permissions, name: 'organisationId', key: { organisationId: 1 } },
    { collection: n.permissions, name: 'evidenceId', key: { evidenceId: 1 } },
    { collection: n.permissionEvents, name: 'permissionId_seq', key: { permissionId: 1, seq: -1 } },
    { collection: n.permissionEvents, name: 'permissionId_stamp', key: { permissionId: 1, stamp: 1 } },
    { collection: n.permissionEvents, name: 'grantId', key: { grantId: 1 } },
    { collection: n.permissionEvents, name: 'expiryDue', key: { expiryDue: 1 } },
    { collection: n.permissionTokenEvents, name: 'permissionId_stamp', key: { permissionId: 1, stamp: 1 } },
    { collection: n.permissionGrants, name: 'permissionId', key: { permissionId: 1 } },
    { collection: n.evidenceLinks, name: 'evidenceId', key: { evidenceId: 1 }, unique: true },
    { collection: n.refreshTokenLinks, name: 'grantId', key: { grantId: 1 } },
    // Outbox (the audit log and its head need only their `_id`).
    { collection: n.outbox, name: 'idempotencyKey', key: { idempotencyKey: 1 }, unique: true },
    { collection: n.outbox, name: 'due', key: { deliveredAt: 1, gaveUpAt: 1, nextAttemptAt: 1 } },
    { collection: n.outbox, name: 'createdAt', key: { createdAt: 1 } },
    // SME accounts.
    { collection: n.smeUsers, name: 'id', key: { id: 1 }, unique: true },
    { collection: n.smeUsers, name: 'organisationId', key: { organisationId: 1 } },
    { collection: n.smeMeters, name: 'organisationId_identifier', key: { organisationId: 1, identifier: 1 }, unique: true },
    { collection: n.smeClientAccounts, name: 'accountId', key: { accountId: 1 }, unique: true },
  ];
}

/** Creates every index of the consent-domain stores. Rejects with StoreUnavailableError when the server is down. */
export async function ensureDomainIndexes(connection: Connection, options: MongoDomainOptions = {}): Promise<DomainIndexReport> {
  return runMongo(connection, async (db) => {
    const indexes: string[] = [];
    for (const spec of domainIndexSpecs(options)) {
      await db.collection(spec.collection).createIndex(spec.key, { name: spec.name, ...(spec.unique ? { unique: true } : {}) });
      indexes.push(`${spec.collection}.${spec.name}`);
    }
    return { indexes };
  });
}
