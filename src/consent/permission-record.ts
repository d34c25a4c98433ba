/**
 * The permission record: an SME's permission for one client application under one license.
 *
 * The advisory group decided that grant, expiry and revocation are separate facts: `lastGranted`
 * and `expires` move when the SME grants again; `revoked` is set once, only by a withdrawal, and
 * never erases `expires`. The status is derived from these facts and never stored.
 */
export type WithdrawnBy = 'sme' | 'client' | 'operator' | 'cascade';
export type PermissionStatus = 'active' | 'expired' | 'revoked';

export interface Permission {
  id: string;
  /** Internal organisation id: never shown to a client. */
  organisationId: string;
  clientId: string;
  license: string;
  /** Opaque per-client account identifier (what the client knows the SME by). */
  account: string;
  /** The oidc-provider grant currently backing this permission. */
  grantId: string;
  firstGranted: Date;
  lastGranted: Date;
  expires: Date;
  revoked?: Date;
  revokedBy?: WithdrawnBy;
  revokedReason?: string;
  dataAvailableFrom: Date;
  tokenIssuedAt?: Date;
  tokenExpires?: Date;
  /** SHA-256 of the exact permission text the SME was shown at the last grant. */
  permissionTextSha256: string;
  /** Meter ids the SME chose to share. */
  meters: string[];
  /** Unguessable id of the public evidence page for this SME and client. */
  evidenceId: string;
}

export type PermissionEventKind = 'granted' | 'renewed' | 'token_issued' | 'token_refreshed' | 'revoked' | 'expired';

export interface PermissionEvent {
  permissionId: string;
  at: Date;
  kind: PermissionEventKind;
  /** Who caused it: an SME user id, a client URL, 'operator', or 'system'. */
  actor: string;
  detail: Record<string, unknown>;
}

export function permissionStatus(p: Pick<Permission, 'revoked' | 'expires'>, now: Date): PermissionStatus {
  if (p.revoked) return 'revoked';
  return p.expires.getTime() <= now.getTime() ? 'expired' : 'active';
}

/** The record in exactly the field names of IB1's Permission Records 1.0. */
export interface Ib1PermissionRecord {
  oauthIssuer: string;
  client: string;
  license: string;
  account: string;
  lastGranted: string;
  expires: string;
  evidence: string;
  revoked?: string;
  dataAvailableFrom: string;
  tokenIssuedAt: string;
  tokenExpires: string;
}

/** ISO 8601 UTC with `Z` and no milliseconds, as the scheme's examples write times. */
export function isoSeconds(d: Date): string {
  return `${d.toISOString().slice(0, 19)}Z`;
}

export function ib1Record(p: Permission, issuer: string): Ib1PermissionRecord {
  const tokenIssuedAt = p.tokenIssuedAt ?? p.lastGranted;
  const tokenExpires = p.tokenExpires && p.tokenExpires < p.expires ? p.tokenExpires : p.expires;
  return {
    oauthIssuer: issuer,
    client: p.clientId,
    license: p.license,
    account: p.account,
    lastGranted: isoSeconds(p.lastGranted),
    expires: isoSeconds(p.expires),
    evidence: `${issuer}/evidence/${p.evidenceId}`,
    ...(p.revoked ? { revoked: isoSeconds(p.revoked) } : {}),
    dataAvailableFrom: isoSeconds(p.dataAvailableFrom),
    tokenIssuedAt: isoSeconds(tokenIssuedAt),
    tokenExpires: isoSeconds(tokenExpires),
  };
}
