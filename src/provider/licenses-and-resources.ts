import { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import type { LicenseCatalog, License } from '../consent/licenses.ts';
import { verdictOf } from '../http/client-certificate.ts';

/**
 * Licenses are the OAuth scopes. Scopes that are not OpenID scopes must belong to a resource
 * server or the library drops them silently (OIDC-PROVIDER-NOTES 3), so the Perseus data APIs
 * are one resource server whose scopes are the licenses this server grants.
 *
 * The checks of what a client may ask for run here, where the library has parsed the request
 * and authenticated the client: one license per request, a license this server grants, and a
 * client certificate that holds the role the license needs.
 */
export interface LicenseOptions {
  catalog: LicenseCatalog;
  /** Resource indicator (audience) of the Perseus data APIs. */
  resourceIndicator: string;
  accessTokenTtl: number;
}

function forbidden(description: string): Error {
  const err = new errors.UnauthorizedClient(description);
  // An authenticated client that lacks the role a license needs is forbidden, not unauthenticated.
  Object.assign(err, { status: 403, statusCode: 403 });
  return err;
}

/** The one license a pushed authorization request asks for (offline_access is tolerated). */
export function requestedLicense(scope: string | undefined, catalog: LicenseCatalog): License {
  const values = (scope ?? '').split(' ').filter((s) => s && s !== 'offline_access');
  if (values.length === 0) throw new errors.InvalidScope('scope must be the URL of a Perseus license', '');
  if (values.length > 1) throw new errors.InvalidScope('ask for one license per authorization request', values.join(' '));
  const license = catalog.get(values[0]);
  if (!license) throw new errors.InvalidScope('requested scope is not a license this server grants', values[0]);
  return license;
}

/** Checks a certificate's roles against a license, on every mTLS endpoint that can mint tokens. */
function assertRole(ctx: KoaContextWithOIDC, license: License): void {
  const verdict = verdictOf(ctx);
  if (!verdict?.ok) throw new errors.InvalidClient('client certificate required');
  if (!verdict.roles.includes(license.requiredRole)) {
    throw forbidden(`the client certificate does not hold the role ${license.requiredRole} that ${license.url} requires`);
  }
}

/** Profile checks on what the client pushed: the redirect URI and the response mode. */
function assertPushedRequest(ctx: KoaContextWithOIDC): void {
  const { redirect_uri: redirectUri, response_mode: responseMode } = ctx.oidc.params as Record<string, string | undefined>;
  const url = redirectUri ? URL.parse(redirectUri) : null;
  if (!url || url.protocol !== 'https:' || url.hash) {
    throw new errors.InvalidRequest('redirect_uri must be an absolute https URL without a fragment');
  }
  if (responseMode !== undefined && responseMode !== 'query') {
    throw new errors.InvalidRequest('response_mode must be query');
  }
}

function licensesOfRequest(ctx: KoaContextWithOIDC, catalog: LicenseCatalog): License[] {
  const entities = ctx.oidc.entities as Record<string, { scope?: string } | undefined>;
  const scope = (ctx.oidc.params?.scope as string | undefined)
    ?? entities.AuthorizationCode?.scope ?? entities.RefreshToken?.scope ?? '';
  return scope.split(' ').map((s) => catalog.get(s)).filter((l): l is License => !!l);
}

export function licenseConfiguration(options: LicenseOptions): Configuration {
  const { catalog, resourceIndicator } = options;
  const longestMonths = Math.max(12, ...catalog.all().map((l) => l.durationMonths));
  // A permission lasts its license's duration; the grant and refresh token can't outlive it.
  // The permission record (consent/) shortens them further when it is withdrawn.
  const permissionSeconds = Math.ceil(longestMonths * 31 * 24 * 3600);

  return {
    ttl: {
      Grant: permissionSeconds,
      RefreshToken: permissionSeconds,
    },
    features: {
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resourceIndicator,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, identifier) => {
          if (identifier !== resourceIndicator) {
            throw new errors.InvalidTarget(`unknown resource; this server issues tokens for ${resourceIndicator}`);
          }
          const route = ctx.oidc.route;
          if (route === 'pushed_authorization_request') {
            assertPushedRequest(ctx);
            assertRole(ctx, requestedLicense(ctx.oidc.params?.scope as string | undefined, catalog));
          } else if (route === 'token') {
            for (const license of licensesOfRequest(ctx, catalog)) assertRole(ctx, license);
          }
          return {
            scope: catalog.urls().join(' '),
            audience: resourceIndicator,
            accessTokenTTL: options.accessTokenTtl,
            accessTokenFormat: 'opaque',
          };
        },
      },
    },
  };
}
