import { readFileSync } from 'node:fs';
import path from 'node:path';

import { openSqliteDatabase } from '../adapters/sqlite-database.ts';
import { SqliteOidcStore } from '../adapters/sqlite-oidc-store.ts';
import type { OidcStore } from '../adapters/types.ts';
import type { ServerConfig } from '../config/environment.ts';
import { silentSink, type LogSink } from '../http/request-log.ts';
import { ApplicationDirectory, DirectoryClient } from '../trust/directory-client.ts';
import { refreshLicenseCatalog, RegistryClient } from '../trust/registry-client.ts';
import { loadOrCreateKeys, type ServerKeys } from '../provider/keys.ts';
import { SqliteAuditLog, type AuditLog } from './audit-log.ts';
import { LicenseCatalog, type License } from './licenses.ts';
import { SqliteOutboxStore, type OutboxStore } from './outbox.ts';
import type { PermissionStore } from './permission-store.ts';
import { Permissions } from './permissions.ts';
import { SmeAccounts, type SmeAccountStore } from './sme-accounts.ts';
import { productionStores } from './production-stores.ts';
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
  catalog: LicenseCatalog;
  names: ApplicationDirectory;
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

/** The stores of one storage choice; `close` closes them all. */
export interface DomainStores {
  oidcStore: OidcStore;
  smeAccounts: SmeAccountStore;
  permissionStore: PermissionStore;
  audit: AuditLog;
  outboxStore: OutboxStore;
  sessions: SmeSessionStore;
  close(): Promise<void>;
}

/** The embedded store: everything in DATA_DIR/perseus.sqlite, with a SQLITE_CACHE_MIB page cache. */
export function sqliteStores(config: ServerConfig, keys: ServerKeys): DomainStores {
  const db = openSqliteDatabase(path.join(config.dataDir, 'perseus.sqlite'), { cacheMib: config.sqliteCacheMib });
  const oidcStore = new SqliteOidcStore(db, { closeDatabase: false });
  return {
    oidcStore,
    smeAccounts: new SmeAccounts(db, keys.accountSecret),
    permissionStore: new SqlitePermissionStore(db),
    audit: new SqliteAuditLog(db),
    outboxStore: new SqliteOutboxStore(db),
    sessions: new SqliteSmeSessionStore(db),
    async close() {
      await oidcStore.close();
      db.close();
    },
  };
}

export interface OpenDomainOptions {
  now: () => Date;
  onMessageQueued?: () => void;
  log?: LogSink;
  /** Refresh licenses from REGISTRY_URL (the server does; operator commands stay offline). */
  refreshLicenses?: boolean;
}

export async function openDomain(config: ServerConfig, options: OpenDomainOptions): Promise<Domain> {
  const log = options.log ?? silentSink;
  const keys = await loadOrCreateKeys(config.dataDir);
  const ca = config.ib1CaFile ? readFileSync(config.ib1CaFile, 'utf8') : undefined;
  let catalog = LicenseCatalog.load({ selection: config.licenses, operatorRole: config.operatorRole, requiredRoles: config.licenseRoles });
  if (config.registryUrl && options.refreshLicenses) {
    catalog = (await refreshLicenseCatalog(catalog, new RegistryClient({ baseUrl: config.registryUrl, ca, log }), { log })).catalog;
  }
  // The Directory's cache runs on real time, not on a test's moved clock.
  const names = new ApplicationDirectory({
    client: config.directoryUrl ? new DirectoryClient({ baseUrl: config.directoryUrl, ca, timeoutMs: 3000, maxEntries: 1000, log }) : undefined,
    directoryFile: config.directoryFile, log,
  });
  const stores = config.storage === 'mongo' ? await productionStores(config, keys) : sqliteStores(config, keys);
  const { smeAccounts, permissionStore, audit, outboxStore, sessions } = stores;
  const baseStore = stores.oidcStore;
  let permissions: Permissions | undefined;
  const oidcStore = new TokenRecordingStore(baseStore, () => permissions!);
  permissions = new Permissions({
    store: permissionStore, oidcStore, audit, outbox: outboxStore, seal: new TokenSeal(keys.tokenSealKey),
    messageDeliveryOf: async (clientId) => (await names.resolve(clientId)).messageDelivery, trustFrameworkUrl: config.trustFrameworkUrl,
    now: options.now, onMessageQueued: options.onMessageQueued,
  });
  return {
    keys, catalog, names, smeAccounts, permissionStore, audit, outboxStore, sessions, oidcStore, permissions,
    dataPeriodMonths: (license) => config.dataPeriodMonths.byLicense[license.label] ?? config.dataPeriodMonths.default,
    close: () => stores.close(),
  };
}
