import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

import { migrate, preparedStatements, writeTransaction, type Prepared } from '../adapters/sqlite-database.ts';
import type { Permission, PermissionEvent, PermissionEventKind, WithdrawnBy } from './permission-record.ts';
import type { GrantOutcome, NewGrant, PermissionStore, RefreshTokenLink } from './permission-store.ts';

const SCHEMA = `
  CREATE TABLE permission (
    id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, client_id TEXT NOT NULL, license TEXT NOT NULL,
    account TEXT NOT NULL, grant_id TEXT NOT NULL, first_granted INTEGER NOT NULL, last_granted INTEGER NOT NULL,
    expires INTEGER NOT NULL, revoked INTEGER, revoked_by TEXT, revoked_reason TEXT,
    data_available_from INTEGER NOT NULL, token_issued_at INTEGER, token_expires INTEGER,
    permission_text_sha256 TEXT NOT NULL, meters TEXT NOT NULL, evidence_id TEXT NOT NULL,
    expiry_recorded INTEGER NOT NULL DEFAULT 0
  );
  -- At most one unrevoked record per SME organisation, client and license: granting again renews it.
  CREATE UNIQUE INDEX permission_current ON permission (organisation_id, client_id, license) WHERE revoked IS NULL;
  CREATE INDEX permission_org ON permission (organisation_id);
  CREATE INDEX permission_evidence ON permission (evidence_id);
  CREATE INDEX permission_expiry ON permission (expires) WHERE revoked IS NULL AND expiry_recorded = 0;
  CREATE TABLE permission_grant (grant_id TEXT PRIMARY KEY, permission_id TEXT NOT NULL REFERENCES permission(id));
  CREATE TABLE permission_event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, permission_id TEXT NOT NULL REFERENCES permission(id),
    at INTEGER NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL
  );
  CREATE INDEX permission_event_permission ON permission_event (permission_id, seq);
  CREATE TABLE evidence_link (organisation_id TEXT NOT NULL, client_id TEXT NOT NULL, evidence_id TEXT NOT NULL UNIQUE,
    PRIMARY KEY (organisation_id, client_id));
  CREATE TABLE refresh_token_link (
    token_hash TEXT PRIMARY KEY, grant_id TEXT NOT NULL, client_id TEXT NOT NULL, sealed_token TEXT NOT NULL,
    issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL
  );
  CREATE INDEX refresh_token_link_grant ON refresh_token_link (grant_id);
`;

interface Row {
  id: string; organisation_id: string; client_id: string; license: string; account: string; grant_id: string;
  first_granted: number; last_granted: number; expires: number; revoked: number | null; revoked_by: string | null;
  revoked_reason: string | null; data_available_from: number; token_issued_at: number | null; token_expires: number | null;
  permission_text_sha256: string; meters: string; evidence_id: string;
}

interface LinkRow { token_hash: string; grant_id: string; client_id: string; sealed_token: string; issued_at: number; expires_at: number }

function toPermission(r: Row): Permission {
  return {
    id: r.id, organisationId: r.organisation_id, clientId: r.client_id, license: r.license, account: r.account,
    grantId: r.grant_id, firstGranted: new Date(r.first_granted), lastGranted: new Date(r.last_granted),
    expires: new Date(r.expires),
    ...(r.revoked !== null ? { revoked: new Date(r.revoked), revokedBy: r.revoked_by as WithdrawnBy, revokedReason: r.revoked_reason ?? '' } : {}),
    dataAvailableFrom: new Date(r.data_available_from),
    ...(r.token_issued_at !== null ? { tokenIssuedAt: new Date(r.token_issued_at) } : {}),
    ...(r.token_expires !== null ? { tokenExpires: new Date(r.token_expires) } : {}),
    permissionTextSha256: r.permission_text_sha256, meters: JSON.parse(r.meters) as string[], evidenceId: r.evidence_id,
  };
}

const newId = () => `perm_${randomBytes(12).toString('base64url')}`;

const BY_ID = 'SELECT * FROM permission WHERE id = ?';
const BY_GRANT_ID = 'SELECT p.* FROM permission p JOIN permission_grant g ON g.permission_id = p.id WHERE g.grant_id = ?';
// The link and its grant's permission in one statement: one read transaction instead of two (a
// read transaction is most of a look-up's cost here, bench/). l_* are the link's columns.
const REFRESH_TOKEN_PERMISSION = `SELECT l.token_hash AS l_token_hash, l.grant_id AS l_grant_id, l.client_id AS l_client_id,
  l.sealed_token AS l_sealed_token, l.issued_at AS l_issued_at, l.expires_at AS l_expires_at, p.*
  FROM refresh_token_link l LEFT JOIN permission_grant g ON g.grant_id = l.grant_id LEFT JOIN permission p ON p.id = g.permission_id
  WHERE l.token_hash = ?`;
const INSERT_EVENT = 'INSERT INTO permission_event (permission_id, at, kind, actor, detail) VALUES (?, ?, ?, ?, ?)';
// One statement finds the grant's permission, caps the token's expiry at the permission's and
// says what it wrote: no read of the record before the write.
const RECORD_TOKEN_ISSUE = `UPDATE permission SET token_issued_at = ?, token_expires = MIN(?, expires)
  WHERE id = (SELECT permission_id FROM permission_grant WHERE grant_id = ?) RETURNING id, token_expires`;
const LINK_REFRESH_TOKEN = `INSERT INTO refresh_token_link (token_hash, grant_id, client_id, sealed_token, issued_at, expires_at)
  VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING`;

/**
 * Permission records in the embedded SQLite database; every multi-row change is one transaction.
 * Statements are prepared once per store. The `…Sync` methods are for callers that combine them
 * with other writes on the same connection in one transaction (Permissions.tokenSaveWork).
 */
export class SqlitePermissionStore implements PermissionStore {
  readonly #db: DatabaseSync;
  readonly #sql: Prepared;

  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#sql = preparedStatements(db);
    migrate(db, 'permissions/001_create', SCHEMA);
  }

  /** The connection this store writes on. */
  get database(): DatabaseSync {
    return this.#db;
  }

  #transaction<T>(work: () => T): T {
    return writeTransaction(this.#db, work);
  }

  #event(permissionId: string, at: Date | number, kind: PermissionEventKind, actor: string, detail: Record<string, unknown>) {
    this.#sql(INSERT_EVENT).run(permissionId, typeof at === 'number' ? at : at.getTime(), kind, actor, JSON.stringify(detail));
  }

  #row(sql: string, ...params: (string | number)[]): Permission | undefined {
    const row = this.#sql(sql).get(...params) as Row | undefined;
    return row ? toPermission(row) : undefined;
  }

  #evidenceId(organisationId: string, clientId: string): string {
    const existing = this.#sql('SELECT evidence_id FROM evidence_link WHERE organisation_id = ? AND client_id = ?')
      .get(organisationId, clientId) as { evidence_id: string } | undefined;
    if (existing) return existing.evidence_id;
    // 192 random bits: the evidence URL is public and must not be guessable.
    const evidenceId = randomBytes(24).toString('base64url');
    this.#sql('INSERT INTO evidence_link (organisation_id, client_id, evidence_id) VALUES (?, ?, ?)').run(organisationId, clientId, evidenceId);
    return evidenceId;
  }

  async recordGrant(g: NewGrant): Promise<GrantOutcome> {
    return this.#transaction(() => {
      const current = this.#row('SELECT * FROM permission WHERE organisation_id = ? AND client_id = ? AND license = ? AND revoked IS NULL',
        g.organisationId, g.clientId, g.license);
      const detail = { license: g.license, expires: g.expires.toISOString(), meters: g.meters, permissionTextSha256: g.permissionTextSha256, grantId: g.grantId };
      if (current) {
        this.#sql(`UPDATE permission SET grant_id = ?, last_granted = ?, expires = ?, data_available_from = ?,
          permission_text_sha256 = ?, meters = ?, expiry_recorded = 0 WHERE id = ?`)
          .run(g.grantId, g.at.getTime(), g.expires.getTime(), g.dataAvailableFrom.getTime(), g.permissionTextSha256, JSON.stringify(g.meters), current.id);
        this.#sql('INSERT INTO permission_grant (grant_id, permission_id) VALUES (?, ?)').run(g.grantId, current.id);
        this.#event(current.id, g.at, 'renewed', g.userId, { ...detail, previousExpires: current.expires.toISOString() });
        return { permission: this.#row(BY_ID, current.id)!, kind: 'renewed' as const, replacedGrantId: current.grantId };
      }
      const id = newId();
      this.#sql(`INSERT INTO permission (id, organisation_id, client_id, license, account, grant_id, first_granted, last_granted,
          expires, data_available_from, permission_text_sha256, meters, evidence_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(id, g.organisationId, g.clientId, g.license, g.account, g.grantId, g.at.getTime(), g.at.getTime(), g.expires.getTime(),
          g.dataAvailableFrom.getTime(), g.permissionTextSha256, JSON.stringify(g.meters), this.#evidenceId(g.organisationId, g.clientId));
      this.#sql('INSERT INTO permission_grant (grant_id, permission_id) VALUES (?, ?)').run(g.grantId, id);
      this.#event(id, g.at, 'granted', g.userId, detail);
      return { permission: this.#row(BY_ID, id)!, kind: 'granted' as const };
    });
  }

  async withdraw(permissionId: string, at: Date, by: WithdrawnBy, actor: string, reason: string) {
    return this.#transaction(() => {
      // The conditional update makes withdrawal idempotent: of two racing withdrawals one sets
      // `revoked` and writes history; the other changes nothing.
      const { changes } = this.#sql('UPDATE permission SET revoked = ?, revoked_by = ?, revoked_reason = ? WHERE id = ? AND revoked IS NULL')
        .run(at.getTime(), by, reason, permissionId);
      if (changes === 1) this.#event(permissionId, at, 'revoked', actor, { by, reason });
      const permission = this.#row(BY_ID, permissionId);
      return permission ? { permission, changed: changes === 1 } : undefined;
    });
  }

  async byId(id: string) {
    return this.#row(BY_ID, id);
  }

  async byGrantId(grantId: string) {
    return this.#row(BY_GRANT_ID, grantId);
  }

  async byOrganisation(organisationId: string) {
    return (this.#sql('SELECT * FROM permission WHERE organisation_id = ? ORDER BY last_granted DESC').all(organisationId) as unknown as Row[]).map(toPermission);
  }

  async byEvidenceId(evidenceId: string) {
    return (this.#sql('SELECT * FROM permission WHERE evidence_id = ? ORDER BY first_granted').all(evidenceId) as unknown as Row[]).map(toPermission);
  }

  async history(permissionId: string): Promise<PermissionEvent[]> {
    const rows = this.#sql('SELECT * FROM permission_event WHERE permission_id = ? ORDER BY seq').all(permissionId) as unknown as
      { permission_id: string; at: number; kind: PermissionEventKind; actor: string; detail: string }[];
    return rows.map((r) => ({ permissionId: r.permission_id, at: new Date(r.at), kind: r.kind, actor: r.actor, detail: JSON.parse(r.detail) }));
  }

  async recordTokenIssue(grantId: string, at: Date, expiresAt: Date, kind: 'token_issued' | 'token_refreshed', actor: string) {
    this.#transaction(() => this.recordTokenIssueSync(grantId, at, expiresAt, kind, actor));
  }

  /**
   * recordTokenIssue without a transaction of its own: the caller runs it inside one (it writes
   * the record and its history event, which must not be separated).
   */
  recordTokenIssueSync(grantId: string, at: Date, expiresAt: Date, kind: 'token_issued' | 'token_refreshed', actor: string): void {
    const atMs = at.getTime();
    const updated = this.#sql(RECORD_TOKEN_ISSUE).get(atMs, expiresAt.getTime(), grantId) as { id: string; token_expires: number } | undefined;
    if (!updated) return;
    this.#event(updated.id, atMs, kind, actor, { tokenExpires: new Date(updated.token_expires).toISOString() });
  }

  async linkRefreshToken(link: RefreshTokenLink) {
    this.linkRefreshTokenSync(link);
  }

  /** linkRefreshToken as one synchronous statement (it joins the caller's transaction, if any). */
  linkRefreshTokenSync(link: RefreshTokenLink): void {
    this.#sql(LINK_REFRESH_TOKEN)
      .run(link.tokenHash, link.grantId, link.clientId, link.sealedToken, link.issuedAt.getTime(), link.expiresAt.getTime());
  }

  async refreshTokenPermission(tokenHash: string) {
    const r = this.#sql(REFRESH_TOKEN_PERMISSION).get(tokenHash) as (Row & { [K in keyof LinkRow as `l_${K}`]: LinkRow[K] }) | undefined;
    if (!r) return undefined;
    const link = this.#link({ token_hash: r.l_token_hash, grant_id: r.l_grant_id, client_id: r.l_client_id, sealed_token: r.l_sealed_token, issued_at: r.l_issued_at, expires_at: r.l_expires_at });
    // LEFT JOIN: no permission row means every column of p is NULL.
    return { link, permission: r.id === null ? undefined : toPermission(r) };
  }

  #link(r: LinkRow): RefreshTokenLink {
    return { tokenHash: r.token_hash, grantId: r.grant_id, clientId: r.client_id, sealedToken: r.sealed_token, issuedAt: new Date(r.issued_at), expiresAt: new Date(r.expires_at) };
  }

  async refreshTokenLink(tokenHash: string) {
    const r = this.#sql('SELECT * FROM refresh_token_link WHERE token_hash = ?').get(tokenHash) as LinkRow | undefined;
    return r ? this.#link(r) : undefined;
  }

  async refreshTokensOfGrant(grantId: string) {
    return (this.#sql('SELECT * FROM refresh_token_link WHERE grant_id = ?').all(grantId) as unknown as LinkRow[]).map((r) => this.#link(r));
  }

  async grantIdsOf(permissionId: string) {
    return (this.#sql('SELECT grant_id FROM permission_grant WHERE permission_id = ?').all(permissionId) as { grant_id: string }[]).map((r) => r.grant_id);
  }

  async recordExpiries(now: Date) {
    return this.#transaction(() => {
      const due = (this.#sql('SELECT * FROM permission WHERE revoked IS NULL AND expiry_recorded = 0 AND expires <= ?').all(now.getTime()) as unknown as Row[]).map(toPermission);
      const mark = this.#sql('UPDATE permission SET expiry_recorded = 1 WHERE id = ?');
      for (const p of due) {
        mark.run(p.id);
        this.#event(p.id, p.expires, 'expired', 'system', { seenAt: now.toISOString() });
      }
      return due;
    });
  }
}
