import type { Middleware } from 'koa';

import { verdictOf } from './client-certificate.ts';
import { oauthError } from './oauth-errors.ts';

/**
 * Introspection is for the operator's own resource servers only (RESOURCE_SERVERS). Anyone
 * else with a valid member certificate is refused outright rather than told `active: false`,
 * so a misconfigured data provider finds out at once.
 */
export function introspectionGate(path: string, resourceServers: string[]): Middleware {
  const allowed = new Set(resourceServers);
  return async function introspectionGate(ctx, next) {
    if (ctx.path !== path) return next();
    const verdict = verdictOf(ctx);
    if (!verdict?.ok || !allowed.has(verdict.applicationUrl)) {
      oauthError(ctx, 403, 'unauthorized_client', 'this application is not a resource server allowed to introspect tokens');
      return;
    }
    await next();
  };
}
