import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

import type { OidcStore } from '../adapters/types.ts';
import type { License, LicenseCatalog } from '../consent/licenses.ts';
import type { PermissionStore } from '../consent/permission-store.ts';
import type { SmeAccountStore } from '../consent/sme-accounts.ts';
import type { ServerKeys } from './keys.ts';
import { mtlsConfiguration } from './certificates-and-clients.ts';
import { interactionConfiguration } from './interactions.ts';
import { licenseConfiguration } from './licenses-and-resources.ts';
import { profileConfiguration } from './profile.ts';
import { storageConfiguration } from './storage.ts';

/**
 * The oidc-provider instance, composed from one configuration part per concern:
 * profile (FAPI 2.0), certificates and clients, licenses and resources, interactions, storage.
 */
export interface ProviderParts {
  issuer: string;
  keys: ServerKeys;
  store: OidcStore;
  catalog: LicenseCatalog;
  smeAccounts: SmeAccountStore;
  resourceIndicator: string;
  resourceServers: string[];
  accessTokenTtl: number;
  permissions: PermissionStore;
  dataPeriodMonths: (license: License) => number;
  now: () => Date;
  renderError: NonNullable<Configuration['renderError']>;
}

export const ROUTES = {
  authorization: '/authorize',
  pushed_authorization_request: '/par',
  token: '/token',
  revocation: '/revoke',
  introspection: '/introspect',
  jwks: '/jwks',
} as const;

/** Merges configuration parts; `features` and `ttl` are merged one level deeper. */
function merge(...parts: Configuration[]): Configuration {
  const out: Configuration = {};
  for (const part of parts) {
    for (const [key, value] of Object.entries(part) as [keyof Configuration, unknown][]) {
      if ((key === 'features' || key === 'ttl') && out[key]) {
        Object.assign(out[key] as object, value);
      } else {
        (out as Record<string, unknown>)[key] = value;
      }
    }
  }
  return out;
}

/**
 * Library routes machines call. Their errors are RFC 6749 JSON whatever the Accept header says: the
 * library renders its HTML error page for any request that prefers text/html, so a client sending a
 * browser's Accept header got a page from /token (found by test/hostile/properties.test.ts).
 */
const MACHINE_ROUTES = new Set(['pushed_authorization_request', 'token', 'revocation', 'introspection', 'jwks']);

export function createProvider(parts: ProviderParts): Provider {
  const introspectors = new Set(parts.resourceServers);
  const configuration = merge(
    profileConfiguration({ accessTokenTtl: parts.accessTokenTtl }),
    mtlsConfiguration(),
    licenseConfiguration({
      catalog: parts.catalog, resourceIndicator: parts.resourceIndicator, accessTokenTtl: parts.accessTokenTtl,
      permissions: parts.permissions, smeAccounts: parts.smeAccounts, dataPeriodMonths: parts.dataPeriodMonths, now: parts.now,
    }),
    interactionConfiguration(parts.smeAccounts),
    storageConfiguration(parts.store),
    {
      jwks: parts.keys.jwks as Configuration['jwks'],
      cookies: {
        keys: parts.keys.cookieKeys,
        long: { signed: true, httpOnly: true, sameSite: 'lax', secure: true },
        short: { signed: true, httpOnly: true, sameSite: 'lax', secure: true },
      },
      routes: ROUTES,
      renderError: async (ctx, out, err) => {
        if (MACHINE_ROUTES.has(ctx.oidc?.route)) {
          ctx.type = 'json';
          ctx.body = out;
          return;
        }
        await parts.renderError(ctx, out, err);
      },
      features: {
        introspection: {
          enabled: true,
          // Only the operator's own resource servers may introspect (OIDC-PROVIDER-NOTES 8).
          allowedPolicy: async (_ctx: KoaContextWithOIDC, client) => introspectors.has(client.clientId),
        },
        revocation: {
          enabled: true,
          // RFC 7009: a client revokes only its own tokens.
          allowedPolicy: async (_ctx: KoaContextWithOIDC, client, token) => {
            if (token.clientId !== client.clientId) {
              throw new errors.UnauthorizedClient('this token was not issued to this client');
            }
            return true;
          },
        },
      },
    },
  );
  return new Provider(parts.issuer, configuration);
}
