import type { Middleware } from 'koa';

import { oauthError } from './oauth-errors.ts';

/**
 * Which paths each listener serves. Browsers use the public listener, which never asks for a
 * client certificate; machines use the mTLS listener (RFC 8705 §5 endpoint aliases).
 */
export const PUBLIC_PATHS = [/^\/authorize(\/[\w-]+)?$/, /^\/interaction\/[\w-]+(\/[\w-]+)?$/, /^\/assets\/[\w.-]+$/,
  /^\/jwks$/, /^\/\.well-known\/oauth-authorization-server$/, /^\/health\/(live|ready)$/, /^\/$/,
  /^\/dashboard(\/sign-in|\/sign-out|\/permissions\/[\w-]+\/withdraw)?\/?$/, /^\/evidence\/[\w-]+$/];
export const MTLS_PATHS = [/^\/par$/, /^\/token$/, /^\/revoke$/, /^\/introspect$/, /^\/permission$/,
  /^\/jwks$/, /^\/\.well-known\/oauth-authorization-server$/, /^\/health\/(live|ready)$/];

/** Public listener: machine endpoints answer with a pointer to their mTLS alias. */
export function publicListenerOnly(mtlsOrigin: string): Middleware {
  return async function publicListenerOnly(ctx, next) {
    if (PUBLIC_PATHS.some((p) => p.test(ctx.path))) return next();
    if (MTLS_PATHS.some((p) => p.test(ctx.path))) {
      oauthError(ctx, 400, 'invalid_request', `this endpoint is served only with mutual TLS at ${mtlsOrigin}${ctx.path}`);
      return;
    }
    ctx.status = 404;
    ctx.state.notFound = true;
  };
}

/** mTLS listener: only machine endpoints. */
export function mtlsListenerOnly(): Middleware {
  return async function mtlsListenerOnly(ctx, next) {
    if (MTLS_PATHS.some((p) => p.test(ctx.path))) return next();
    oauthError(ctx, 404, 'not_found', 'no such endpoint on the mutual-TLS origin');
  };
}
