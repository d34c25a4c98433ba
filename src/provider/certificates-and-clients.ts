import type { Configuration, KoaContextWithOIDC } from 'oidc-provider';

import type { ClientCertificateVerdict } from '../pki/client-certificate.ts';
import type { OidcAdapter } from '../adapters/types.ts';
import { verdictOf } from '../http/client-certificate.ts';

/**
 * Clients are not registered. A client is whoever presents an IB1 member certificate that chains
 * to the configured Client CA and names its Directory Application URL as the single URI
 * subjectAltName; that URL is its client_id. The certificate is verified before the library runs
 * (http/client-certificate.ts), because the library calls these helpers synchronously
 * (OIDC-PROVIDER-NOTES 1): they only read the verdict stored on the request.
 */

/** Longest client_id accepted: Directory URLs are short; this bounds what reaches the stores. */
const MAX_CLIENT_ID = 512;

export function isApplicationUrl(value: string): boolean {
  if (value.length > MAX_CLIENT_ID) return false;
  // The library refuses a client_id outside printable ASCII (RFC 6749 VSCHAR) as
  // invalid_client_metadata, a 400 that blames the server's own metadata; such an id names no
  // client (certificate URIs are ASCII), so it is unknown: invalid_client (found by
  // test/hostile/properties.test.ts with invalid UTF-8 in client_id).
  if (/[^\x20-\x7E]/.test(value)) return false;
  const url = URL.parse(value);
  return !!url && url.protocol === 'https:' && !url.username && !url.password && !url.hash;
}

/** Client metadata made from a certificate URL (OIDC-PROVIDER-NOTES 17). */
export function clientMetadataFor(clientId: string, names?: { clientName?: string }) {
  return {
    client_id: clientId,
    client_name: names?.clientName,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_san_uri: clientId,
    tls_client_certificate_bound_access_tokens: true,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [],
  };
}

/** The `Client` model's adapter: it finds any application URL and stores nothing. */
export class CertificateClientAdapter implements OidcAdapter {
  async find(id: string) {
    return isApplicationUrl(id) ? clientMetadataFor(id) : undefined;
  }
  async upsert() { throw new Error('clients are not registered: they come from certificates'); }
  async findByUid() { return undefined; }
  async findByUserCode() { return undefined; }
  async consume() {}
  async destroy() {}
  async revokeByGrantId() {}
}

function verified(ctx: KoaContextWithOIDC): Extract<ClientCertificateVerdict, { ok: true }> | undefined {
  const verdict = verdictOf(ctx);
  return verdict?.ok ? verdict : undefined;
}

export function mtlsConfiguration(): Configuration {
  return {
    features: {
      mTLS: {
        enabled: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: false,
        certificateBoundAccessTokens: true,
        getCertificate: (ctx) => verified(ctx)?.leaf as never,
        certificateAuthorized: (ctx) => verified(ctx) !== undefined,
        certificateSubjectMatches: (ctx, property, expected) =>
          property === 'tls_client_auth_san_uri' && verified(ctx)?.applicationUrl === expected,
      },
    },
  };
}
