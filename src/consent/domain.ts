import path from 'node:path';
import type { DatabaseSync } from 'node:sqlite';

import { openSqliteDatabase } from '../adapters/sqlite-database.ts';
import { SqliteOidcStore } from '../adapters/sqlite-oidc-store.ts';
import type { OidcStore } from '../adapters/types.ts';
import type { ServerConfig } from '../config/environment.ts';
import { ApplicationNames } from '../interactions/application-names.ts';
import { loadOrCreateKeys, type ServerKeys } from '../provider/keys.ts';
import { SqliteAuditLog, type AuditLog } from './audit-log.ts';
import { LicenseCatalog, type License } from './licenses.ts';
import { SqliteOutboxStore, type OutboxStore } from './outbox.ts';
import type { PermissionStore } from './permission-store.ts';
import { Permissions } from './permissions.ts';
import { SmeAccounts, type SmeAccountStore } from './sme-accounts.ts';
import { SqliteSmeSessionStore, type SmeSessionStore } from './sme-sessions.ts';
import { SqlitePermissionStore } from './sqlite-permission-store.ts';
import { TokenRecordingStore } from './token-recording-store.ts';
import { TokenSeal } from './token-seal.ts';

/**
 * The permission domain and its stores, opened in one place for the server and the operator
 * CLI alike: SME accounts, permission records, audit log, outbox, SME sessions, and the
 * oidc-provider store wrapped so that tokens are recorded on their permission.
 */
export interface Domain {
  keys: ServerKeys;
  db: DatabaseSync;
  catalog: LicenseCatalog;
  names: ApplicationNames;
  smeAccounts: SmeAccountStore;
  permissionStore: PermissionStore;
  audit: AuditLog;
  outboxStore: OutboxStore;
  sessions: SmeSessionStore;
  oidcStore: OidcStore;
  permissions: Permissions;
  dataPeriodMonths: (license: License) => number;
  close(): Promise<void>;
}

export async function openDomain(config: ServerConfig, options: { now: () => Date; onMessageQueued?: () => void }): Promise<Domain> {
  const keys = await loadOrCreateKeys(config.dataDir);
  const db = openSqliteDatabase(path.join(config.dataDir, 'perseus.sqlite'));
  const catalog = LicenseCatalog.load({ selection: config.licenses, operatorRole: config.operatorRole });
  const names = new ApplicationNames(config.directoryFile);
  const smeAccounts = new SmeAccounts(db, keys.accountSecret);
  const permissionStore = new SqlitePermissionStore(db);
  const audit = new SqliteAuditLog(db);
  const outboxStore = new SqliteOutboxStore(db);
  const sessions = new SqliteSmeSessionStore(db);
  const baseStore = new SqliteOidcStore(db, { closeDatabase: false });
  let permissions: Permissions | undefined;
  const oidcStore = new TokenRecordingStore(baseStore, () => permissions!);
  permissions = new Permissions({
    store: permissionStore, oidcStore, audit, outbox: outboxStore, seal: new TokenSeal(keys.tokenSealKey),
    messageDeliveryOf: (clientId) => names.of(clientId).messageDelivery, trustFrameworkUrl: config.trustFrameworkUrl,
    now: options.now, onMessageQueued: options.onMessageQueued,
  });
  return {
    keys, db, catalog, names, smeAccounts, permissionStore, audit, outboxStore, sessions, oidcStore, permissions,
    dataPeriodMonths: (license) => config.dataPeriodMonths.byLicense[license.label] ?? config.dataPeriodMonths.default,
    async close() {
      await oidcStore.close();
      db.close();
    },
  };
}
