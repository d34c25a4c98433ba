/**
 * The embedded store's token recording as the server wires it (consent/domain.ts): the
 * oidc-provider store, the permission store, the audit log and the outbox on one SQLite
 * connection, Permissions over them, and TokenRecordingStore around the oidc-provider store.
 * Shared by token-recording.test.ts and its worker threads.
 */
import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

import { SqliteOidcStore } from '../../src/adapters/sqlite-oidc-store.ts';
import { SqliteAuditLog } from '../../src/consent/audit-log.ts';
import { SqliteOutboxStore } from '../../src/consent/outbox.ts';
import { Permissions } from '../../src/consent/permissions.ts';
import { SqlitePermissionStore } from '../../src/consent/sqlite-permission-store.ts';
import { TokenRecordingStore } from '../../src/consent/token-recording-store.ts';
import { TokenSeal } from '../../src/consent/token-seal.ts';

export function recordingDomain(db: DatabaseSync) {
  const oidc = new SqliteOidcStore(db, { closeDatabase: false });
  const store = new SqlitePermissionStore(db);
  const audit = new SqliteAuditLog(db);
  const outbox = new SqliteOutboxStore(db);
  let permissions: Permissions | undefined;
  const tokens = new TokenRecordingStore(oidc, () => permissions!);
  permissions = new Permissions({
    store, oidcStore: tokens, audit, outbox, seal: new TokenSeal(randomBytes(32)),
    messageDeliveryOf: async () => undefined, trustFrameworkUrl: 'https://tf.example', now: () => new Date(),
  });
  return { oidc, store, audit, outbox, permissions, tokens };
}

/** An access token payload as oidc-provider saves it, for a grant and client. */
export function accessTokenPayload(id: string, grantId: string, clientId: string, iatSeconds = Math.floor(Date.now() / 1000)) {
  return { jti: id, kind: 'AccessToken', grantId, clientId, accountId: 'acct_1', iat: iatSeconds, exp: iatSeconds + 600, gty: 'authorization_code', scope: 'x' };
}

export function refreshTokenPayload(id: string, grantId: string, clientId: string, iatSeconds = Math.floor(Date.now() / 1000)) {
  return { jti: id, kind: 'RefreshToken', grantId, clientId, accountId: 'acct_1', iat: iatSeconds, exp: iatSeconds + 86400, gty: 'authorization_code', scope: 'x' };
}
