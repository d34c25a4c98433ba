// Signing certificates of IB1 provenance records: the PEM form records embed, decimal serials, the
// signer information a step is attributed to, and chain verification at the signing time.
import { X509Certificate } from 'node:crypto';
import { certificatesFromPemBundle } from '../pki/client-certificate.ts';
import { IB1_MEMBER_OID, IB1_ROLES_OID, decodeMember, decodeRoles } from '../pki/ib1-extensions.ts';
import { buildChain } from '../pki/chain.ts';
import { x509 } from '../pki/x509.ts';
import { ProvenanceError } from './errors.ts';

/** Who signed a container, as ib1-provenance's CertificateProviderBase.verify returns it. */
export interface SignerInfo {
  /** ib1Member extension (1.3.6.1.4.1.62329.1.3): the member's Directory URL. */
  member: string;
  /** Subject organizationName. */
  name: string;
  /** The single URI subjectAltName: the application's Directory URL. */
  application: string;
  /** ib1Roles extension (1.3.6.1.4.1.62329.1.1). */
  roles: string[];
}

/** The certificate as Python's `public_bytes(Encoding.PEM)` writes it (64-column base64, trailing newline). */
export function certificatePem(certificate: X509Certificate): string {
  const lines = certificate.raw.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

/** The serial as ib1-provenance writes it: `str(certificate.serial_number)`, a decimal string. */
export function decimalSerial(certificate: X509Certificate): string {
  return BigInt(`0x${certificate.serialNumber}`).toString(10);
}

/** notBefore/notAfter from the DER (node's validFromDate needs Node >= 22.10; this matches src/pki). */
export function validityOf(certificate: X509Certificate): { notBefore: Date; notAfter: Date } {
  const parsed = new x509.X509Certificate(certificate.raw);
  return { notBefore: parsed.notBefore, notAfter: parsed.notAfter };
}

export function parseCertificatePem(pem: unknown, what: string): X509Certificate {
  if (typeof pem !== 'string') throw new ProvenanceError('malformed', `${what} is not a PEM string`);
  const certificates = certificatesFromPemBundleSafe(pem, what);
  if (certificates.length !== 1) throw new ProvenanceError('malformed', `${what} must hold exactly one certificate`);
  return certificates[0];
}

export function certificatesFromPemBundleSafe(pem: string, what: string): X509Certificate[] {
  try {
    return certificatesFromPemBundle(pem);
  } catch (error) {
    throw new ProvenanceError('malformed', `${what} is not a valid PEM certificate`, { cause: error });
  }
}

const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';
const ANY_EXTENDED_KEY_USAGE_OID = '2.5.29.37.0';
// RFC 5280: a certificate with a critical extension we do not understand must be refused.
const UNDERSTOOD_EXTENSIONS = new Set([
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.15', // keyUsage
  '2.5.29.17', // subjectAltName
  '2.5.29.19', // basicConstraints
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.37', // extKeyUsage
  IB1_ROLES_OID,
  IB1_MEMBER_OID,
]);

function untrusted(message: string, cause?: unknown): ProvenanceError {
  return new ProvenanceError('untrusted_certificate', message, cause === undefined ? undefined : { cause });
}

function describe(certificate: X509Certificate): string {
  return certificate.subject.replaceAll('\n', ', ');
}

function only<T>(parsed: x509.X509Certificate, oid: string, decode: (der: ArrayBuffer) => T): T | undefined {
  const found = parsed.extensions.filter((extension) => extension.type === oid);
  if (found.length > 1) throw untrusted(`the signing certificate repeats extension ${oid}`);
  return found.length === 0 ? undefined : decode(found[0].rawData);
}

/**
 * The signer information of a signing certificate, with the checks the Python verifier makes
 * (cryptography's client-certificate policy, then SigningCertificate's accessors): an end-entity EC
 * certificate, extendedKeyUsage (if any) allowing clientAuth, keyUsage (if any) allowing
 * digitalSignature, exactly one URI subjectAltName, an organizationName, ib1Member and ib1Roles.
 */
export function signerInfoOf(certificate: X509Certificate): SignerInfo {
  if (certificate.ca) throw untrusted('a CA certificate cannot sign provenance records');
  if (certificate.publicKey.asymmetricKeyType !== 'ec') throw untrusted('the signing certificate does not hold an EC key');
  let parsed: x509.X509Certificate;
  try {
    parsed = new x509.X509Certificate(certificate.raw);
  } catch (error) {
    throw untrusted('the signing certificate cannot be decoded', error);
  }
  const unknownCritical = parsed.extensions.find((extension) => extension.critical && !UNDERSTOOD_EXTENSIONS.has(extension.type));
  if (unknownCritical) throw untrusted(`the signing certificate has an unsupported critical extension ${unknownCritical.type}`);
  try {
    const keyUsage = only(parsed, '2.5.29.15', (der) => new x509.KeyUsagesExtension(der));
    if (keyUsage && !(keyUsage.usages & x509.KeyUsageFlags.digitalSignature)) throw untrusted('the signing certificate key may not make digital signatures');
    const extendedKeyUsage = only(parsed, '2.5.29.37', (der) => new x509.ExtendedKeyUsageExtension(der));
    if (extendedKeyUsage && !extendedKeyUsage.usages.some((usage) => usage === CLIENT_AUTH_OID || usage === ANY_EXTENDED_KEY_USAGE_OID)) {
      throw untrusted('the signing certificate extendedKeyUsage does not allow clientAuth (which IB1 verifiers require)');
    }
    const san = only(parsed, '2.5.29.17', (der) => new x509.SubjectAlternativeNameExtension(der));
    const uris = (san?.names.items ?? []).filter((name) => name.type === 'url').map((name) => name.value);
    if (uris.length !== 1) throw untrusted(`the signing certificate has ${uris.length} URI subjectAltNames, not exactly one`);
    const name = parsed.subjectName.getField('O')[0];
    if (name === undefined) throw untrusted('the signing certificate has no organizationName');
    const member = only(parsed, IB1_MEMBER_OID, (der) => decodeMember(new x509.Extension(der).value));
    if (member === undefined) throw untrusted('the signing certificate has no ib1Member extension');
    const roles = only(parsed, IB1_ROLES_OID, (der) => decodeRoles(new x509.Extension(der).value));
    if (roles === undefined) throw untrusted('the signing certificate has no ib1Roles extension');
    return { member, name, application: uris[0], roles };
  } catch (error) {
    if (error instanceof ProvenanceError) throw error;
    throw untrusted(`the signing certificate cannot be decoded: ${(error as Error).message}`, error);
  }
}

export interface SigningCertificateTrustOptions {
  /** PEM of the trusted signing CA root(s): IB1's Signing CA, or the dev one. */
  rootsPem: string;
  /** PEM of known signing issuers, for records that do not embed their issuer. */
  intermediatesPem?: string;
}

/**
 * Verifies a signing certificate chain at a given instant (the signing timestamp): every link's
 * signature and name, CA flags and path lengths, and every certificate's validity at that instant.
 */
export class SigningCertificateTrust {
  readonly #roots: X509Certificate[];
  readonly #intermediates: X509Certificate[];

  constructor(options: SigningCertificateTrustOptions) {
    this.#roots = certificatesFromPemBundleSafe(options.rootsPem, 'signing CA roots');
    this.#intermediates = certificatesFromPemBundleSafe(options.intermediatesPem ?? '', 'signing issuers');
    if (this.#roots.length === 0) throw new ProvenanceError('untrusted_certificate', 'no trusted signing CA root certificate given');
    for (const certificate of [...this.#roots, ...this.#intermediates]) {
      if (!certificate.ca) throw new ProvenanceError('untrusted_certificate', `${describe(certificate)} is not a CA certificate`);
    }
  }

  /** `presented`: the signing certificate first, then any issuers the record carries. Returns the chain up to the root. */
  verify(presented: X509Certificate[], at: Date): { signer: SignerInfo; chain: X509Certificate[] } {
    const leaf = presented[0];
    const signer = signerInfoOf(leaf);
    const chain = buildChain(leaf, [...presented.slice(1), ...this.#intermediates], this.#roots);
    if (!chain) throw untrusted(`${describe(leaf)} does not chain to a configured signing CA`);
    const time = at.getTime();
    for (const certificate of chain) {
      const { notBefore, notAfter } = validityOf(certificate);
      if (time < notBefore.getTime() || time > notAfter.getTime()) {
        throw new ProvenanceError(
          'certificate_not_valid',
          `${describe(certificate)} was not valid at the signing time ${at.toISOString()} (valid ${notBefore.toISOString()} to ${notAfter.toISOString()})`,
        );
      }
    }
    return { signer, chain };
  }
}

