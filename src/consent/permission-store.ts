import type { Permission, PermissionEvent, WithdrawnBy } from './permission-record.ts';

/**
 * Where permission records, their history and the links from refresh tokens live. The embedded
 * store is SQLite (sqlite-permission-store.ts); production uses MongoDB behind this interface.
 */
export interface NewGrant {
  organisationId: string;
  clientId: string;
  license: string;
  account: string;
  grantId: string;
  at: Date;
  expires: Date;
  dataAvailableFrom: Date;
  permissionTextSha256: string;
  meters: string[];
  /** The SME user who decided. */
  userId: string;
}

export interface GrantOutcome {
  permission: Permission;
  /** 'granted' for a new record, 'renewed' when an unrevoked record was granted again. */
  kind: 'granted' | 'renewed';
  /** The grant backing the record before this renewal, if any (it stays valid until it expires or the permission is withdrawn). */
  replacedGrantId?: string;
}

export interface RefreshTokenLink {
  tokenHash: string;
  grantId: string;
  clientId: string;
  /** The refresh token value, encrypted with the server's key, for withdrawal messages. */
  sealedToken: string;
  issuedAt: Date;
  expiresAt: Date;
}

export interface PermissionStore {
  /** Creates or renews the record of (organisation, client, license) in one atomic step. */
  recordGrant(grant: NewGrant): Promise<GrantOutcome>;
  /** Sets `revoked` if it is not set yet. Returns the record, and whether this call withdrew it. */
  withdraw(permissionId: string, at: Date, by: WithdrawnBy, actor: string, reason: string): Promise<{ permission: Permission; changed: boolean } | undefined>;
  byId(id: string): Promise<Permission | undefined>;
  byGrantId(grantId: string): Promise<Permission | undefined>;
  byOrganisation(organisationId: string): Promise<Permission[]>;
  byEvidenceId(evidenceId: string): Promise<Permission[]>;
  history(permissionId: string): Promise<PermissionEvent[]>;
  /** Records a token issue against the permission of that grant (no-op for an unknown grant). */
  recordTokenIssue(grantId: string, at: Date, expiresAt: Date, kind: 'token_issued' | 'token_refreshed', actor: string): Promise<void>;
  linkRefreshToken(link: RefreshTokenLink): Promise<void>;
  refreshTokenLink(tokenHash: string): Promise<RefreshTokenLink | undefined>;
  /**
   * The refresh token's link and the permission of its grant, as refreshTokenLink then byGrantId
   * would give them, in one read where the store can (the permission endpoint's request).
   */
  refreshTokenPermission(tokenHash: string): Promise<{ link: RefreshTokenLink; permission: Permission | undefined } | undefined>;
  refreshTokensOfGrant(grantId: string): Promise<RefreshTokenLink[]>;
  /** Every grant that ever backed this permission (one per grant or renewal). */
  grantIdsOf(permissionId: string): Promise<string[]>;
  /** Adds an `expired` event to records whose expiry passed and has not been recorded yet. */
  recordExpiries(now: Date): Promise<Permission[]>;
}
