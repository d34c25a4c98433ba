// The dev trust framework's provenance Signing CA. IB1 issues "signing" certificates from a Signing
// CA kept apart from the Client CA (ib1-directory: `create-ca --usage signing`); this mirrors it with
// the same in-process CA code as src/pki: a P-384 root, a P-256 issuer, P-256 signing certificates
// shaped like member certificates (O, one URI SAN = application URL, ib1Roles, ib1Member).
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Issuer, type LeafMaterial, createIntermediateCa, createRootCa, issueClientLeaf, loadIssuer } from '../pki/certificate-authority.ts';
import { roleUrl } from '../pki/dev-trust-framework.ts';
import { ProvenanceError } from './errors.ts';
import { type ProvenanceSigner, signerFromPem } from './signer.ts';

export interface DevSigningAuthority {
  /** The Signing CA root: what verifiers configure as `signingRootsPem`. */
  root: Issuer;
  /** The Signing Issuer that signs the signing certificates. */
  issuer: Issuer;
}

export interface DevSigningAuthorityOptions {
  rootName?: string;
  issuerName?: string;
  notBefore?: Date;
  notAfter?: Date;
}

export async function createDevSigningAuthority(options: DevSigningAuthorityOptions = {}): Promise<DevSigningAuthority> {
  const validity = { notBefore: options.notBefore, notAfter: options.notAfter };
  const root = await createRootCa({ name: options.rootName ?? 'Perseus Dev Signing CA', keyAlgorithm: 'P-384', ...validity });
  const issuer = await createIntermediateCa(root, { name: options.issuerName ?? 'Perseus Dev Signing Issuer', keyAlgorithm: 'P-256', ...validity });
  return { root, issuer };
}

export interface DevSigningCertificateOptions {
  /** The application's Directory URL (the URI SAN and CN). */
  applicationUrl: string;
  organisation: string;
  /** Role labels (e.g. `energy-data-provider`) or role URLs. */
  roles: string[];
  /** The member's Directory URL; default: the application URL's origin (as dev client certificates). */
  member?: string;
  notBefore?: Date;
  notAfter?: Date;
}

/** A signing certificate from the Signing Issuer; `bundlePem` is signing certificate + issuer, as IB1's tooling writes it. */
export async function issueDevSigningCertificate(authority: DevSigningAuthority, options: DevSigningCertificateOptions): Promise<LeafMaterial> {
  return issueClientLeaf(authority.issuer, {
    applicationUrl: options.applicationUrl,
    organisation: options.organisation,
    roles: options.roles.map(roleUrl),
    member: options.member ?? `${new URL(options.applicationUrl).origin}/`,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
  });
}

export interface DevSigningPaths {
  dir: string;
  signingCa: string;
  signingCaKey: string;
  signingIssuer: string;
  signingIssuerKey: string;
  /** The operator's signing certificate followed by the Signing Issuer. */
  signingBundle: string;
  signingKey: string;
}

/** Suggested place: `DATA_DIR/pki/signing`. */
export function devSigningPaths(dir: string): DevSigningPaths {
  return {
    dir,
    signingCa: join(dir, 'signing-ca.pem'),
    signingCaKey: join(dir, 'signing-ca.key.pem'),
    signingIssuer: join(dir, 'signing-issuer.pem'),
    signingIssuerKey: join(dir, 'signing-issuer.key.pem'),
    signingBundle: join(dir, 'signing-bundle.pem'),
    signingKey: join(dir, 'signing.key.pem'),
  };
}

function writePrivateKey(path: string, pem: string): void {
  writeFileSync(path, pem, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/**
 * Creates the dev Signing CA and the operator's signing certificate in `dir` unless they exist
 * (then nothing is touched). A partial set is an error, as for the dev PKI.
 */
export async function initDevSigning(dir: string, operator: DevSigningCertificateOptions): Promise<{ created: boolean; paths: DevSigningPaths }> {
  const paths = devSigningPaths(dir);
  const files = Object.entries(paths).filter(([name]) => name !== 'dir').map(([, path]) => path);
  const missing = files.filter((path) => !existsSync(path));
  if (missing.length === 0) return { created: false, paths };
  if (missing.length < files.length) {
    throw new ProvenanceError('invalid_signer', `the dev Signing CA in ${dir} is incomplete (missing ${missing.join(', ')}); remove it to recreate it`);
  }
  const authority = await createDevSigningAuthority();
  const leaf = await issueDevSigningCertificate(authority, operator);
  mkdirSync(dir, { recursive: true });
  writeFileSync(paths.signingCa, authority.root.certificatePem);
  writePrivateKey(paths.signingCaKey, authority.root.keyPem);
  writeFileSync(paths.signingIssuer, authority.issuer.certificatePem);
  writePrivateKey(paths.signingIssuerKey, authority.issuer.keyPem);
  writeFileSync(paths.signingBundle, leaf.bundlePem);
  writePrivateKey(paths.signingKey, leaf.keyPem);
  return { created: true, paths };
}

/** The Signing CA and Issuer from `dir` (e.g. to issue more signing certificates in tests). */
export async function loadDevSigningAuthority(dir: string): Promise<DevSigningAuthority> {
  const paths = devSigningPaths(dir);
  return {
    root: await loadIssuer(readFileSync(paths.signingCa, 'utf8'), readFileSync(paths.signingCaKey, 'utf8')),
    issuer: await loadIssuer(readFileSync(paths.signingIssuer, 'utf8'), readFileSync(paths.signingIssuerKey, 'utf8')),
  };
}

/** The operator's signer from `dir` (self-contained records: certificates embedded). */
export function loadDevSigner(dir: string): ProvenanceSigner {
  const paths = devSigningPaths(dir);
  return signerFromPem({ certificatePem: readFileSync(paths.signingBundle, 'utf8'), keyPem: readFileSync(paths.signingKey, 'utf8') });
}
