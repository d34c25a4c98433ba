import type { DatabaseSync } from 'node:sqlite';

import { hashIdentifier } from '../adapters/oidc-adapter-common.ts';
import { writeTransaction } from '../adapters/sqlite-database.ts';
import type { OidcStore } from '../adapters/types.ts';
import { SqliteAuditLog, type AuditEvent, type AuditLog } from './audit-log.ts';
import { revokeGrant } from './grant-revocation.ts';
import { withdrawalMessage } from './message-delivery.ts';
import type { OutboxStore } from './outbox.ts';
import type { Permission, WithdrawnBy } from './permission-record.ts';
import type { NewGrant, PermissionStore, RefreshTokenLink } from './permission-store.ts';
import { SqlitePermissionStore } from './sqlite-permission-store.ts';
import type { TokenSeal } from './token-seal.ts';

/**
 * The permission domain's operations: grant and renewal, token bookkeeping, withdrawal from any
 * of its three paths (SME, client, operator), and recording expiries. Each keeps the record, the
 * oidc-provider grant, the audit log and the outbox in step.
 */
export interface PermissionsDeps {
  store: PermissionStore;
  oidcStore: OidcStore;
  audit: AuditLog;
  outbox: OutboxStore;
  seal: TokenSeal;
  /** Where a client application receives messages (its Directory `messageDelivery`), if known. */
  messageDeliveryOf: (clientId: string) => Promise<string | undefined>;
  trustFrameworkUrl: string;
  now: () => Date;
  /** Called after a message was queued, to deliver it without waiting for the next poll. */
  onMessageQueued?: () => void;
}

export interface RequestFacts { ip?: string; userAgent?: string }

/** What a saved token carries that its recording needs. */
export interface SavedTokenPayload { grantId?: string; clientId?: string; iat?: number; exp?: number; gty?: string }

/** The record of one access token issue: on its permission, and in the audit log. */
interface AccessTokenRecord {
  grantId: string;
  at: Date;
  expiresAt: Date;
  kind: 'token_issued' | 'token_refreshed';
  actor: string;
  audit: AuditEvent;
}

export class Permissions {
  readonly #d: PermissionsDeps;
  /** The permission store and audit log when both are on one SQLite connection (see tokenSaveWork). */
  readonly #sqlite: { db: DatabaseSync; store: SqlitePermissionStore; audit: SqliteAuditLog } | undefined;

  constructor(deps: PermissionsDeps) {
    this.#d = deps;
    const { store, audit } = deps;
    this.#sqlite = store instanceof SqlitePermissionStore && audit instanceof SqliteAuditLog && store.database === audit.database
      ? { db: store.database, store, audit }
      : undefined;
  }

  get store(): PermissionStore {
    return this.#d.store;
  }

  /**
   * The SME allowed: create or renew the record. A renewal does not revoke the grant it
   * follows: that grant's tokens stay valid until they expire or the permission is withdrawn, so
   * two people of one organisation deciding at the same moment both complete their flows.
   */
  async grant(grant: NewGrant, facts: RequestFacts = {}): Promise<Permission> {
    const outcome = await this.#d.store.recordGrant(grant);
    await this.#d.audit.append({
      kind: 'decision', at: grant.at, actor: grant.userId, client: grant.clientId, license: grant.license, ...facts,
      detail: { decision: 'allow', outcome: outcome.kind, permission: outcome.permission.id, meters: grant.meters, permissionTextSha256: grant.permissionTextSha256 },
    });
    return outcome.permission;
  }

  /**
   * Withdraws a permission. Idempotent: `revoked` is set once and only the first call writes
   * history; the grant and its tokens are revoked every time (harmless when already gone), so a
   * crash between the two steps heals on the next attempt.
   */
  async withdraw(permissionId: string, by: WithdrawnBy, actor: string, reason: string, facts: RequestFacts = {}) {
    const at = this.#d.now();
    const result = await this.#d.store.withdraw(permissionId, at, by, actor, reason);
    if (!result) return undefined;
    const { permission, changed } = result;
    // Every grant that ever backed the permission dies with it. Links to refresh tokens
    // outlive the tokens: read them before anything else happens.
    const grantIds = await this.#d.store.grantIdsOf(permission.id);
    const links = (await Promise.all(grantIds.map((id) => this.#d.store.refreshTokensOfGrant(id)))).flat();
    for (const grantId of grantIds) await revokeGrant(this.#d.oidcStore, grantId);
    if (changed) {
      await this.#d.audit.append({ kind: 'withdrawal', at, actor, client: permission.clientId, license: permission.license, ...facts, detail: { by, reason, permission: permission.id } });
    }
    // The provider side tells the client; a client that withdrew itself already knows.
    if (changed && (by === 'sme' || by === 'operator')) {
      const target = await this.#d.messageDeliveryOf(permission.clientId);
      for (const link of links) {
        if (!target) {
          await this.#d.audit.append({ kind: 'message_given_up', at, actor: 'system', client: permission.clientId, detail: { reason: 'no messageDelivery URL in the directory', permission: permission.id } });
          break;
        }
        await this.#d.outbox.enqueue({
          kind: 'withdrawal', target, idempotencyKey: `withdrawal:${link.tokenHash}`,
          body: withdrawalMessage(this.#d.trustFrameworkUrl, this.#d.seal.open(link.sealedToken)),
        }, at);
      }
      if (target && links.length) this.#d.onMessageQueued?.();
    }
    return { permission, changed };
  }

  /** RFC 7009 revocation by the client of a token of this grant. */
  async withdrawnByClient(grantId: string, clientId: string, facts: RequestFacts = {}) {
    const permission = await this.#d.store.byGrantId(grantId);
    if (!permission) return undefined;
    return this.withdraw(permission.id, 'client', clientId, 'the client application revoked its token', facts);
  }

  /** Keeps the link from a refresh token to its permission (hash, and the token sealed). */
  async refreshTokenSaved(token: string, payload: SavedTokenPayload) {
    const link = this.#refreshTokenLink(token, payload);
    if (link) await this.#d.store.linkRefreshToken(link);
  }

  /** Records each access token issue on the permission and in the audit log. */
  async accessTokenSaved(payload: SavedTokenPayload) {
    const r = this.#accessTokenRecord(payload);
    if (!r) return;
    await this.#d.store.recordTokenIssue(r.grantId, r.at, r.expiresAt, r.kind, r.actor);
    await this.#d.audit.append(r.audit);
  }

  /**
   * Whether tokenSaveWork can record tokens written on `db`: the permission store and the audit
   * log are SQLite stores on that same connection.
   */
  recordsSynchronouslyOn(db: DatabaseSync): boolean {
    return this.#sqlite?.db === db;
  }

  /**
   * The embedded store's way to save a token, as work to run later (prepared from the payload as
   * it is now; TokenRecordingStore hands it to the group commit, adapters/sqlite-group-commit.ts):
   * `save` (the token row's synchronous write on the same connection) and its recording
   * (refreshTokenSaved or accessTokenSaved: the permission's token fields and history event, the
   * refresh-token link, the audit event) in ONE transaction.
   * One commit instead of three or four; a recording that fails takes the token row with it, so
   * no token exists without its record. The audit head is read inside the transaction, which holds
   * the write lock, so processes sharing the file never fork the chain.
   *
   * Only when recordsSynchronouslyOn(db) is true. The audit event is written by
   * SqliteAuditLog.appendSync, not through `audit.append` (which metrics observe; they count no
   * token events).
   */
  tokenSaveWork(model: 'AccessToken' | 'RefreshToken', token: string, payload: SavedTokenPayload, save: () => void): () => void {
    const sqlite = this.#sqlite;
    if (!sqlite) throw new Error('tokenSaveWork needs the SQLite permission store and audit log on one connection');
    const link = model === 'RefreshToken' ? this.#refreshTokenLink(token, payload) : undefined;
    const record = model === 'AccessToken' ? this.#accessTokenRecord(payload) : undefined;
    return () => writeTransaction(sqlite.db, () => {
      save();
      if (link) sqlite.store.linkRefreshTokenSync(link);
      if (record) {
        sqlite.store.recordTokenIssueSync(record.grantId, record.at, record.expiresAt, record.kind, record.actor);
        sqlite.audit.appendSync(record.audit);
      }
    });
  }

  #refreshTokenLink(token: string, payload: SavedTokenPayload): RefreshTokenLink | undefined {
    if (!payload.grantId || !payload.clientId) return undefined;
    return {
      tokenHash: hashIdentifier(token), grantId: payload.grantId, clientId: payload.clientId, sealedToken: this.#d.seal.seal(token),
      issuedAt: new Date((payload.iat ?? 0) * 1000), expiresAt: new Date((payload.exp ?? 0) * 1000),
    };
  }

  #accessTokenRecord(payload: SavedTokenPayload): AccessTokenRecord | undefined {
    if (!payload.grantId || !payload.clientId) return undefined;
    const kind = payload.gty === 'refresh_token' ? 'token_refreshed' : 'token_issued';
    const at = new Date((payload.iat ?? 0) * 1000);
    return {
      grantId: payload.grantId, at, expiresAt: new Date((payload.exp ?? 0) * 1000), kind, actor: payload.clientId,
      audit: { kind, at, actor: payload.clientId, client: payload.clientId, detail: { grant: payload.grantId } },
    };
  }

  /** Notes every permission whose expiry has passed since the last look (history and audit). */
  async recordExpiries(): Promise<number> {
    const expired = await this.#d.store.recordExpiries(this.#d.now());
    for (const p of expired) {
      for (const grantId of await this.#d.store.grantIdsOf(p.id)) await revokeGrant(this.#d.oidcStore, grantId);
      await this.#d.audit.append({ kind: 'expiry_seen', at: this.#d.now(), actor: 'system', client: p.clientId, license: p.license, detail: { permission: p.id, expires: p.expires.toISOString() } });
    }
    return expired.length;
  }
}
