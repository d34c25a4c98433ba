import type { Middleware } from 'koa';

import { completeMachineError, oauthError } from './oauth-errors.ts';

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
    if (PUBLIC_PATHS.some((p) => p.test(ctx.path))) {
      await next();
      // A known path with a method nothing serves (PUT /dashboard, GET /interaction/x/sign-in …)
      // fell through every router: koa would send a bare text/plain "Not Found". People get the
      // HTML not-found page instead (found by test/hostile/properties.test.ts).
      if (ctx.status === 404 && ctx.body == null) ctx.state.notFound = true;
      return;
    }
    if (MTLS_PATHS.some((p) => p.test(ctx.path))) {
      oauthError(ctx, 400, 'invalid_request', `this endpoint is served only with mutual TLS at ${mtlsOrigin}${ctx.path}`);
      return;
    }
    ctx.status = 404;
    ctx.state.notFound = true;
  };
}

/** Methods each mTLS path is served with (the health paths answer any method). */
const MTLS_METHODS: Array<[RegExp, string]> = [[/^\/(par|token|revoke|introspect|permission)$/, 'POST'], [/^\/(jwks|\.well-known\/oauth-authorization-server)$/, 'GET, HEAD']];

/** mTLS listener: only machine endpoints. */
export function mtlsListenerOnly(): Middleware {
  return async function mtlsListenerOnly(ctx, next) {
    if (MTLS_PATHS.some((p) => p.test(ctx.path))) {
      await next();
      // A machine path with a method nothing serves (GET /token, PUT /par …) fell through the
      // library's router: koa would send a bare text/plain "Not Found". Machines get an RFC 6749
      // JSON error with the methods that are served (found by test/hostile/properties.test.ts).
      if (ctx.status === 404 && ctx.body == null) {
        const allow = MTLS_METHODS.find(([p]) => p.test(ctx.path))?.[1] ?? 'POST';
        ctx.set('Allow', allow);
        oauthError(ctx, 405, 'invalid_request', `${ctx.method} is not served on ${ctx.path}; use ${allow}`);
      }
      completeMachineError(ctx);
      return;
    }
    oauthError(ctx, 404, 'not_found', 'no such endpoint on the mutual-TLS origin');
  };
}
