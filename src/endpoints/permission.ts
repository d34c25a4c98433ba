import type { Middleware } from 'koa';
import type Provider from 'oidc-provider';

import { hashIdentifier } from '../adapters/oidc-adapter-common.ts';
import { ib1Record } from '../consent/permission-record.ts';
import type { PermissionStore } from '../consent/permission-store.ts';
import { verdictOf } from '../http/client-certificate.ts';
import { readForm, field } from '../http/form-body.ts';
import { oauthError } from '../http/oauth-errors.ts';

/**
 * `ib1_permission_endpoint` (mTLS): the client POSTs `token=<refresh token>` and gets
 * `{"permission":{…}}` in IB1's field names. It answers from the link kept when the refresh token
 * was issued, so it keeps working after the token expired or was revoked. Access tokens are
 * refused; another client's token is not found (404), which reveals nothing about it.
 */
export function permissionEndpoint(path: string, deps: { store: PermissionStore; provider: Provider; issuer: string }): Middleware {
  return async function permissionEndpoint(ctx, next) {
    if (ctx.path !== path) return next();
    if (ctx.method !== 'POST') {
      ctx.set('Allow', 'POST');
      oauthError(ctx, 405, 'invalid_request', 'use POST with a form body');
      return;
    }
    let token: string;
    try {
      token = field(await readForm(ctx), 'token');
    } catch {
      oauthError(ctx, 400, 'invalid_request', 'the body must be application/x-www-form-urlencoded with one token parameter');
      return;
    }
    if (!token) {
      oauthError(ctx, 400, 'invalid_request', 'send exactly one token parameter: the refresh token');
      return;
    }
    const verdict = verdictOf(ctx);
    const clientId = verdict?.ok ? verdict.applicationUrl : undefined;
    const found = await deps.store.refreshTokenPermission(hashIdentifier(token));
    if (!found) {
      if (await deps.provider.AccessToken.find(token)) {
        oauthError(ctx, 400, 'unsupported_token_type', 'send the refresh token; access tokens are not accepted here');
        return;
      }
      oauthError(ctx, 404, 'not_found', 'no permission is known for this token');
      return;
    }
    const permission = found.link.clientId === clientId ? found.permission : undefined;
    if (!permission) {
      oauthError(ctx, 404, 'not_found', 'no permission is known for this token');
      return;
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { permission: ib1Record(permission, deps.issuer) };
  };
}
