import { X509Certificate } from 'node:crypto';
import type { TLSSocket, DetailedPeerCertificate } from 'node:tls';

import type { Context, Middleware } from 'koa';

import type { ClientCertificateVerifier, RevocationCheckedVerdict } from '../pki/revocation-list-cache.ts';
import { oauthError } from './oauth-errors.ts';
import { presentedChainOf } from './proxy-client-certificate.ts';

/**
 * Reads the client certificate chain from the TLS connection and verifies it against the
 * configured Client CA, storing the verdict on the request before the OAuth library runs: the
 * library's mTLS helpers are synchronous and only read this verdict.
 */
const chains = new WeakMap<TLSSocket, X509Certificate[]>();

/** The chain the client presented on this connection, leaf first (parsed once per connection). */
export function presentedChain(socket: TLSSocket): X509Certificate[] {
  let chain = chains.get(socket);
  if (chain) return chain;
  chain = [];
  const peer = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(true) : undefined;
  const seen = new Set<string>();
  let cert: DetailedPeerCertificate | undefined = peer && Object.keys(peer).length ? peer : undefined;
  while (cert?.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(new X509Certificate(cert.raw));
    cert = cert.issuerCertificate;
  }
  chains.set(socket, chain);
  return chain;
}

const STATE_KEY = 'clientCertificate';

export function verdictOf(ctx: { state: Record<string, unknown> }): RevocationCheckedVerdict | undefined {
  return ctx.state[STATE_KEY] as RevocationCheckedVerdict | undefined;
}

/** Verifies the certificate of this TLS connection and records the verdict on `ctx.state`. */
export function verifyClientCertificate(trust: ClientCertificateVerifier, now: () => Date = () => new Date()): Middleware {
  return async function verifyClientCertificate(ctx: Context, next) {
    // A trusted TLS-terminating proxy's forwarded chain wins (set only for requests from trusted proxies).
    const chain = presentedChainOf(ctx) ?? presentedChain(ctx.req.socket as TLSSocket);
    ctx.state[STATE_KEY] = trust.verify(chain, now());
    await next();
  };
}

/**
 * Machine endpoints answer nobody without a valid member certificate: 401 invalid_client with
 * the reason (the reason names the certificate's problem, never a secret).
 */
export function requireClientCertificate(): Middleware {
  return async function requireClientCertificate(ctx: Context, next) {
    const verdict = verdictOf(ctx);
    if (!verdict?.ok) {
      oauthError(ctx, 401, 'invalid_client', verdict ? `client certificate refused: ${verdict.message}` : 'a client certificate is required');
      return;
    }
    await next();
  };
}
