import { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import { dataPeriod } from '../consent/data-period.ts';
import type { LicenseCatalog, License } from '../consent/licenses.ts';
import { isoSeconds, permissionStatus, type Permission } from '../consent/permission-record.ts';
import type { PermissionStore } from '../consent/permission-store.ts';
import type { SmeAccountStore } from '../consent/sme-accounts.ts';
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
  permissions: PermissionStore;
  smeAccounts: SmeAccountStore;
  /** Whole months back a data provider may serve under a license. */
  dataPeriodMonths: (license: License) => number;
  now: () => Date;
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

/** The grant a token request draws on: the code's or the refresh token's. */
function grantOfRequest(ctx: KoaContextWithOIDC): string | undefined {
  const entities = ctx.oidc.entities as Record<string, { grantId?: string } | undefined>;
  return entities.AuthorizationCode?.grantId ?? entities.RefreshToken?.grantId;
}

function licensesOfRequest(ctx: KoaContextWithOIDC, catalog: LicenseCatalog): License[] {
  const entities = ctx.oidc.entities as Record<string, { scope?: string } | undefined>;
  const scope = (ctx.oidc.params?.scope as string | undefined)
    ?? entities.AuthorizationCode?.scope ?? entities.RefreshToken?.scope ?? '';
  return scope.split(' ').map((s) => catalog.get(s)).filter((l): l is License => !!l);
}

/** The permission a token request has read, kept for the rest of that request only. */
const permissionsOfRequest = new WeakMap<object, { permission: Permission; grantIds: Set<string> }>();

export function licenseConfiguration(options: LicenseOptions): Configuration {
  const { catalog, resourceIndicator } = options;
  const longestMonths = Math.max(12, ...catalog.all().map((l) => l.durationMonths));
  // A permission lasts its license's duration; the grant and refresh token can't outlive it.
  // The permission record (consent/) shortens them further when it is withdrawn.
  const permissionSeconds = Math.ceil(longestMonths * 31 * 24 * 3600);

  return {
    ttl: {
      // The consent step creates each Grant with the permission's exact remaining life.
      Grant: permissionSeconds,
      // A refresh token lives as long as its grant (the permission), never longer.
      RefreshToken: (ctx) => {
        const grant = (ctx?.oidc?.entities as { Grant?: { exp?: number } } | undefined)?.Grant;
        const remaining = grant?.exp ? grant.exp - Math.floor(Date.now() / 1000) : permissionSeconds;
        return Math.max(1, Math.min(permissionSeconds, remaining));
      },
    },
    // What introspection tells a data provider: the account, license, meters and data period.
    extraTokenClaims: async (ctx, token) => {
      if (!('grantId' in token) || !token.grantId) return {};
      // The token request already read this permission in getResourceServerInfo: reuse it.
      const known = permissionsOfRequest.get(ctx);
      const permission = known?.grantIds.has(token.grantId) ? known.permission : await options.permissions.byGrantId(token.grantId);
      if (!permission) return {};
      const license = catalog.get(permission.license);
      const period = dataPeriod(options.now(), permission.dataAvailableFrom, license ? options.dataPeriodMonths(license) : 12);
      const meters = (await options.smeAccounts.meters(permission.organisationId)).filter((m) => permission.meters.includes(m.id));
      return {
        account: permission.account,
        license: permission.license,
        meters: meters.map((m) => ({ id: m.identifier, type: m.fuel, ukPostcodeOutcode: m.outcode })),
        data_period: { from: isoSeconds(period.from), to: isoSeconds(period.to) },
        permission_expires: isoSeconds(permission.expires),
      };
    },
    features: {
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resourceIndicator,
        useGrantedResource: () => true,
        getResourceServerInfo: async (ctx, identifier) => {
          if (identifier !== resourceIndicator) {
            throw new errors.InvalidTarget(`unknown resource; this server issues tokens for ${resourceIndicator}`);
          }
          const route = ctx.oidc.route;
          if (route === 'pushed_authorization_request') {
            assertPushedRequest(ctx);
            assertRole(ctx, requestedLicense(ctx.oidc.params?.scope as string | undefined, catalog));
          }
          let accessTokenTTL = options.accessTokenTtl;
          if (route === 'token') {
            for (const license of licensesOfRequest(ctx, catalog)) assertRole(ctx, license);
            // Fail closed: no token unless the permission behind the grant is active now, and
            // no access token that outlives the permission.
            const grantId = grantOfRequest(ctx);
            const permission = grantId ? await options.permissions.byGrantId(grantId) : undefined;
            if (permission && grantId) permissionsOfRequest.set(ctx, { permission, grantIds: new Set([grantId]) });
            const now = options.now();
            // Any grant of the permission will do (a renewal does not retire the one before it).
            if (!permission || permissionStatus(permission, now) !== 'active') {
              throw new errors.InvalidGrant('the permission behind this grant is not active');
            }
            const remaining = Math.floor((permission.expires.getTime() - now.getTime()) / 1000);
            accessTokenTTL = Math.max(1, Math.min(accessTokenTTL, remaining));
          }
          return {
            scope: catalog.urls().join(' '),
            audience: resourceIndicator,
            accessTokenTTL,
            accessTokenFormat: 'opaque',
          };
        },
      },
    },
  };
}
