import type { OidcStore } from '../adapters/types.ts';

/** Models that hold tokens of a grant; all die with it (OIDC-PROVIDER-NOTES 7). */
const GRANT_MODELS = ['AccessToken', 'RefreshToken', 'AuthorizationCode', 'BackchannelAuthenticationRequest', 'DeviceCode'] as const;

/**
 * Revokes a grant and every token issued under it, outside a request (dashboard, CLI, renewal).
 * Destroying the Grant alone already makes introspection answer `active: false`; the tokens are
 * removed too so nothing of the grant stays usable. Safe to call twice.
 */
export async function revokeGrant(store: OidcStore, grantId: string): Promise<void> {
  await store.adapterFor('Grant').destroy(grantId);
  await Promise.all(GRANT_MODELS.map((model) => store.adapterFor(model).revokeByGrantId(grantId)));
}
