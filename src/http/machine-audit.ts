import type { Context, Middleware } from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';

import type { AuditLog } from '../consent/audit-log.ts';
import type { Permissions } from '../consent/permissions.ts';
import { verdictOf } from './client-certificate.ts';

/**
 * What machine requests mean for the permission record and the audit log, read after the
 * library has answered:
 * - a successful PAR is the client's assertion that it holds the SME's permission (audited with
 *   time, client, license, IP and user agent);
 * - a successful RFC 7009 revocation by the client withdraws the permission (`revoked`, by client).
 */
export function machineAudit(paths: { par: string; revocation: string }, deps: { audit: AuditLog; permissions: Permissions; now: () => Date }): Middleware {
  return async function machineAudit(ctx: Context, next) {
    await next();
    const oidc = (ctx as unknown as KoaContextWithOIDC).oidc;
    const verdict = verdictOf(ctx);
    if (!verdict?.ok || !oidc) return;
    const facts = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    if (ctx.path === paths.par && ctx.status === 201) {
      await deps.audit.append({
        kind: 'par', at: deps.now(), actor: verdict.applicationUrl, client: verdict.applicationUrl,
        license: String(oidc.params?.scope ?? ''), ...facts,
        detail: { redirectUri: oidc.params?.redirect_uri, roles: verdict.roles },
      });
    } else if (ctx.path === paths.revocation && ctx.status === 200) {
      const entities = oidc.entities as Record<string, { grantId?: string; clientId?: string } | undefined>;
      const token = entities.RefreshToken ?? entities.AccessToken;
      if (token?.grantId && token.clientId === verdict.applicationUrl) {
        await deps.audit.append({ kind: 'revocation', at: deps.now(), actor: verdict.applicationUrl, client: verdict.applicationUrl, ...facts, detail: { grant: token.grantId } });
        await deps.permissions.withdrawnByClient(token.grantId, verdict.applicationUrl, facts);
      }
    }
  };
}
