import type { X509Certificate } from 'node:crypto';

import { x509 } from './x509.ts';

/** root -> issuer -> leaf is the IB1 shape; a little headroom, but a hard bound against crafted loops. */
const MAX_CHAIN_LENGTH = 5;

/**
 * Builds leaf -> issuer -> ... -> one of `roots` from the certificates the peer sent and the
 * known intermediates. Each link needs both the name/key-identifier match (checkIssued) and a
 * valid signature (verify): names alone are forgeable. Every CA above the leaf must be allowed
 * to sign certificates (keyUsage) and have room for the CAs below it (pathLen). Used for client
 * certificates (pki/client-certificate.ts) and signing certificates (provenance/certificates.ts).
 */
export function buildChain(leaf: X509Certificate, candidates: X509Certificate[], roots: X509Certificate[]): X509Certificate[] | undefined {
  const chain = [leaf];
  for (let current = leaf; chain.length <= MAX_CHAIN_LENGTH; ) {
    const issuedBy = (issuer: X509Certificate) => current.checkIssued(issuer) && current.verify(issuer.publicKey);
    const root = roots.find(issuedBy);
    if (root) {
      chain.push(root);
      return caConstraintsHold(chain) ? chain : undefined;
    }
    const next = candidates.find((candidate) => candidate.ca && !chain.includes(candidate) && issuedBy(candidate));
    if (!next) return undefined;
    chain.push(next);
    current = next;
  }
  return undefined;
}

function caConstraintsHold(chain: X509Certificate[]): boolean {
  for (let i = 1; i < chain.length; i++) {
    const parsed = new x509.X509Certificate(chain[i].raw);
    const keyUsage = parsed.getExtension(x509.KeyUsagesExtension);
    if (keyUsage && !(keyUsage.usages & x509.KeyUsageFlags.keyCertSign)) return false;
    const pathLength = parsed.getExtension(x509.BasicConstraintsExtension)?.pathLength;
    if (pathLength !== undefined && i - 1 > pathLength) return false;
  }
  return true;
}
