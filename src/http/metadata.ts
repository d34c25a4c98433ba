import type { Middleware } from 'koa';

import { ROUTES } from '../provider/index.ts';

/**
 * RFC 8414 authorization server metadata with the values IB1's profile requires. Machine
 * endpoints are on the mTLS origin; `mtls_endpoint_aliases` repeats every `*_endpoint` exactly.
 * The library's OpenID discovery document is not served: this server has no OpenID surface.
 */
export interface MetadataOptions {
  issuer: string;
  mtlsOrigin: string;
  licenses: string[];
}

export const PERMISSION_PATH = '/permission';

export function authorizationServerMetadata(options: MetadataOptions): Record<string, unknown> {
  const { issuer, mtlsOrigin } = options;
  const endpoints = {
    authorization_endpoint: `${issuer}${ROUTES.authorization}`,
    pushed_authorization_request_endpoint: `${mtlsOrigin}${ROUTES.pushed_authorization_request}`,
    token_endpoint: `${mtlsOrigin}${ROUTES.token}`,
    revocation_endpoint: `${mtlsOrigin}${ROUTES.revocation}`,
    introspection_endpoint: `${mtlsOrigin}${ROUTES.introspection}`,
    ib1_permission_endpoint: `${mtlsOrigin}${PERMISSION_PATH}`,
  };
  return {
    issuer,
    ...endpoints,
    jwks_uri: `${issuer}${ROUTES.jwks}`,
    scopes_supported: options.licenses,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['tls_client_auth'],
    revocation_endpoint_auth_methods_supported: ['tls_client_auth'],
    introspection_endpoint_auth_methods_supported: ['tls_client_auth'],
    require_pushed_authorization_requests: true,
    tls_client_certificate_bound_access_tokens: true,
    authorization_response_iss_parameter_supported: true,
    use_mtls_endpoint_aliases: true,
    mtls_endpoint_aliases: { ...endpoints },
  };
}

export function serveMetadata(options: MetadataOptions): Middleware {
  const body = JSON.stringify(authorizationServerMetadata(options));
  return async function serveMetadata(ctx, next) {
    if (ctx.path === '/.well-known/oauth-authorization-server' && (ctx.method === 'GET' || ctx.method === 'HEAD')) {
      ctx.type = 'application/json';
      ctx.set('Cache-Control', 'public, max-age=300');
      ctx.body = body;
      return;
    }
    await next();
  };
}
