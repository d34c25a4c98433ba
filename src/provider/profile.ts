import type { Configuration } from 'oidc-provider';

/**
 * The FAPI 2.0 Security Profile as IB1's "OAuth with Member Identity Certificates" profile
 * narrows it. The library's `fapi` feature alone is thin (OIDC-PROVIDER-NOTES 2): PAR, response
 * types, client authentication and algorithms are all set here explicitly.
 */
export interface ProfileOptions {
  /** Access token lifetime, seconds (≤ 3600: data APIs must fail within 60 min of a withdrawal). */
  accessTokenTtl: number;
}

export function profileConfiguration(options: ProfileOptions): Configuration {
  return {
    // Authorization code flow only; no implicit or hybrid response.
    responseTypes: ['code'],
    // PKCE is always required; the library accepts only S256.
    pkce: { required: () => true },
    // The only client authentication is mutual TLS with an IB1 member certificate.
    clientAuthMethods: ['tls_client_auth'],
    // FAPI 2.0 algorithms: no HS* (shared secrets) and no RS256 (PKCS#1 v1.5).
    enabledJWA: {
      authorizationSigningAlgValues: ['ES256', 'PS256'],
      idTokenSigningAlgValues: ['ES256', 'PS256'],
      introspectionSigningAlgValues: ['ES256', 'PS256'],
      requestObjectSigningAlgValues: ['ES256', 'PS256'],
      userinfoSigningAlgValues: ['ES256', 'PS256'],
      clientAuthSigningAlgValues: ['ES256', 'PS256'],
    },
    // Signed artefacts (none are issued in the IB1 flow) default to an algorithm FAPI allows.
    clientDefaults: {
      id_token_signed_response_alg: 'ES256',
      authorization_signed_response_alg: 'ES256',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    // No OpenID Connect surface: the only scopes are license URLs (owned by the resource server,
    // see licenses-and-resources.ts). `offline_access` stays accepted for clients that follow
    // IB1's demo and add it; a refresh token is issued either way.
    scopes: ['offline_access'],
    claims: {},
    conformIdTokenClaims: true,
    acceptQueryParamAccessTokens: false,
    allowOmittingSingleRegisteredRedirectUri: false,
    clockTolerance: 5,
    ttl: {
      // Codes live 60 s at most and are single use (the adapter's consume is atomic).
      AuthorizationCode: 60,
      AccessToken: () => options.accessTokenTtl,
      Interaction: 30 * 60,
      Session: 30 * 60,
      // The refresh token and the grant follow the permission (see licenses-and-resources.ts).
    },
    // Refresh tokens are not rotated (FAPI practice; a reused rotated token would revoke the grant).
    rotateRefreshToken: false,
    // Tokens outlive the browser session that granted them: the SME closes the tab, the bank
    // keeps its permission for the license's duration.
    expiresWithSession: () => false,
    // The client asks only for the license scope; the server issues the refresh token itself.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    features: {
      // Sender constraint is mutual TLS (RFC 8705); DPoP is not part of IB1's profile.
      dPoP: { enabled: false },
      fapi: { enabled: true, profile: '2.0' },
      pushedAuthorizationRequests: {
        enabled: true,
        requirePushedAuthorizationRequests: true,
        // redirect_uri arrives only through the mTLS-authenticated PAR (see clients.ts for the
        // https-only check).
        allowUnregisteredRedirectUris: true,
      },
      devInteractions: { enabled: false },
      userinfo: { enabled: false },
      registration: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      claimsParameter: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
  };
}
