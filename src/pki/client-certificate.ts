// Per-request verification of the client certificate presented in the mTLS handshake.
// Synchronous by design: the OAuth library reads the verdict synchronously, so everything here uses
// node:crypto's X509Certificate (sync signature checks) and sync DER parsing.
import { X509Certificate } from 'node:crypto';
import { CertificateError } from './errors.ts';
import { isHttpsUrl } from './https-url.ts';
import { IB1_MEMBER_OID, IB1_ROLES_OID, decodeMember, decodeRoles } from './ib1-extensions.ts';
import { buildChain } from './chain.ts';
import { x509 } from './x509.ts';

export type ClientCertificateFailureCode =
  | 'no_certificate'
  | 'untrusted'
  | 'expired'
  | 'not_yet_valid'
  | 'no_uri_san'
  | 'multiple_uri_san'
  | 'bad_extension'
  | 'not_client_auth'
  | 'ca_certificate'
  | 'bad_subject';

export type ClientCertificateVerdict =
  | {
      ok: true;
      applicationUrl: string;
      roles: string[];
      member?: string;
      organisation?: string;
      /** base64url SHA-256 of the leaf DER: the RFC 8705 `cnf.x5t#S256` value. */
      thumbprintS256: string;
      leaf: X509Certificate;
    }
  | { ok: false; code: ClientCertificateFailureCode; message: string };

export interface ClientCertificateTrustOptions {
  /** PEM text of the trusted Client CA root(s); a bundle may hold several. */
  rootsPem: string;
  /** PEM text of known Client Issuers, so a client that sends only its leaf still chains. */
  intermediatesPem?: string;
  /** Maximum cached verdicts (LRU). */
  cacheSize?: number;
}

const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';
// Extensions this verifier understands; RFC 5280 requires refusing a certificate with any other critical one.
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
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Splits PEM text into certificates (anything between blocks, e.g. comments, is ignored). */
export function certificatesFromPemBundle(pem: string): X509Certificate[] {
  return (pem.match(PEM_CERTIFICATE) ?? []).map((block) => new X509Certificate(block));
}

type Failure = Extract<ClientCertificateVerdict, { ok: false }>;
type LeafClaims = Omit<Extract<ClientCertificateVerdict, { ok: true }>, 'ok' | 'leaf'>;

/** What is cached: everything that does not depend on the clock. Validity windows are re-checked per call. */
type CachedResult =
  | { chained: false; failure: Failure }
  | { chained: true; validity: Validity[]; claims: LeafClaims | Failure };

/** Validity window of one chain certificate, in epoch milliseconds. */
interface Validity {
  subject: string;
  notBefore: number;
  notAfter: number;
}

function fail(code: ClientCertificateFailureCode, message: string): Failure {
  return { ok: false, code, message };
}

/**
 * A certificate's subject for a message. Bounded: the message reaches the client's error_description
 * and the logs, and a hostile subject can be tens of kilobytes (found by
 * test/hostile/certificates.test.ts, which saw a 16 KiB common name echoed back whole).
 */
const MAX_DESCRIBED = 200;
function describe(certificate: X509Certificate): string {
  const subject = certificate.subject.replaceAll('\n', ', ');
  return subject.length > MAX_DESCRIBED ? `${subject.slice(0, MAX_DESCRIBED)}… (${subject.length} characters)` : subject;
}

/**
 * IB1 member certificates name C, ST, O and CN (ib1-directory); a subject far past that is not a
 * member certificate, whoever signed it, and its organisation would flow into records and logs.
 * Bounds generous enough for any real subject (found by test/hostile/certificates.test.ts: a
 * trusted-issuer leaf with 300 RDNs or a 16 KiB CN was accepted).
 */
const MAX_SUBJECT_RDNS = 16;
const MAX_SUBJECT_BYTES = 2048;

export class ClientCertificateTrust {
  readonly #roots: X509Certificate[];
  readonly #intermediates: X509Certificate[];
  readonly #cacheSize: number;
  readonly #cache = new Map<string, CachedResult>();

  constructor(options: ClientCertificateTrustOptions) {
    this.#roots = certificatesFromPemBundle(options.rootsPem);
    this.#intermediates = certificatesFromPemBundle(options.intermediatesPem ?? '');
    this.#cacheSize = options.cacheSize ?? 1000;
    if (this.#roots.length === 0) throw new CertificateError('invalid_argument', 'no trusted Client CA root certificate given');
    for (const certificate of [...this.#roots, ...this.#intermediates]) {
      if (!certificate.ca) throw new CertificateError('invalid_argument', `${describe(certificate)} is not a CA certificate`);
    }
  }

  /** `presented`: the leaf first, then whatever intermediates the client sent. */
  verify(presented: X509Certificate[], now: Date = new Date()): ClientCertificateVerdict {
    const leaf = presented[0];
    if (!leaf) return fail('no_certificate', 'no client certificate was presented');

    // Keyed by every presented certificate: the chain found depends on the intermediates sent, not just the leaf.
    const key = presented.map((certificate) => certificate.fingerprint256).join('/');
    let result = this.#cache.get(key);
    if (result) {
      this.#cache.delete(key); // re-insert to mark as most recently used
    } else {
      result = this.#evaluate(presented);
    }
    this.#cache.set(key, result);
    if (this.#cache.size > this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);

    if (!result.chained) return { ...result.failure };
    const time = now.getTime();
    for (const { subject, notBefore, notAfter } of result.validity) {
      if (time < notBefore) return fail('not_yet_valid', `${subject} is not valid before ${new Date(notBefore).toISOString()}`);
      if (time > notAfter) return fail('expired', `${subject} expired at ${new Date(notAfter).toISOString()}`);
    }
    if ('ok' in result.claims) return { ...result.claims };
    // Copies, so a caller mutating its verdict cannot alter what later requests are told.
    return { ok: true, ...result.claims, roles: [...result.claims.roles], leaf };
  }

  /** Never throws: it runs per request, and a certificate our parsers choke on is simply refused. */
  #evaluate(presented: X509Certificate[]): CachedResult {
    try {
      return this.#evaluateChain(presented);
    } catch (error) {
      return { chained: false, failure: fail('bad_extension', `the certificate chain could not be decoded: ${(error as Error).message}`) };
    }
  }

  #evaluateChain(presented: X509Certificate[]): CachedResult {
    const leaf = presented[0];
    const chain = buildChain(leaf, [...presented.slice(1), ...this.#intermediates], this.#roots);
    if (!chain) {
      return { chained: false, failure: fail('untrusted', `${describe(leaf)} does not chain to a trusted Client CA`) };
    }
    // Dates come from the DER via @peculiar/x509: node's validFromDate/validToDate need Node >= 22.10.
    const validity = chain.map((certificate) => {
      const parsed = new x509.X509Certificate(certificate.raw);
      return { subject: describe(certificate), notBefore: parsed.notBefore.getTime(), notAfter: parsed.notAfter.getTime() };
    });
    return { chained: true, validity, claims: leafClaims(leaf) };
  }

}


/** The clock-independent leaf checks and the IB1 claims. */
function leafClaims(leaf: X509Certificate): LeafClaims | Failure {
  if (leaf.ca) return fail('ca_certificate', 'a CA certificate cannot be used as a client certificate');
  // node returns undefined (despite its typings) when there is no extendedKeyUsage. RFC 5280:
  // no extendedKeyUsage means any purpose, and IB1's own tooling (ib1-directory) issues client
  // certificates without one; when the extension is present it must name clientAuth.
  const extendedKeyUsages: string[] | undefined = leaf.keyUsage;
  if (extendedKeyUsages !== undefined && !extendedKeyUsages.includes(CLIENT_AUTH_OID)) {
    return fail('not_client_auth', 'the certificate is not issued for TLS client authentication');
  }
  try {
    return decodeClaims(leaf);
  } catch (error) {
    // Any DER the signer vouched for but we cannot decode (ours or peculiar's parsers) is a bad extension.
    return fail('bad_extension', `the certificate could not be decoded: ${(error as Error).message}`);
  }
}

/** Decodes from the DER via @peculiar/x509; throws on anything malformed. */
function decodeClaims(leaf: X509Certificate): LeafClaims | Failure {
  const parsed = new x509.X509Certificate(leaf.raw);
  const subjectBytes = parsed.subjectName.toArrayBuffer().byteLength;
  if (parsed.subjectName.toJSON().length > MAX_SUBJECT_RDNS || subjectBytes > MAX_SUBJECT_BYTES) {
    return fail('bad_subject', `the certificate subject is too large (${parsed.subjectName.toJSON().length} RDNs, ${subjectBytes} bytes)`);
  }
  const unknownCritical = parsed.extensions.find((extension) => extension.critical && !UNDERSTOOD_EXTENSIONS.has(extension.type));
  if (unknownCritical) return fail('bad_extension', `unsupported critical extension ${unknownCritical.type}`);
  const keyUsage = single(parsed, '2.5.29.15', (der) => new x509.KeyUsagesExtension(der));
  if (keyUsage && !(keyUsage.usages & x509.KeyUsageFlags.digitalSignature)) {
    return fail('not_client_auth', 'the certificate key may not be used for digital signatures');
  }

  // SANs come from the DER rather than node's `subjectAltName` string, whose quoting/escaping
  // (e.g. `URI:"https://a/b\u002cc"`) would otherwise have to be reverse-engineered.
  const san = single(parsed, '2.5.29.17', (der) => new x509.SubjectAlternativeNameExtension(der));
  const uris = (san?.names.items ?? []).filter((name) => name.type === 'url').map((name) => name.value);
  if (uris.length === 0) return fail('no_uri_san', 'the certificate has no URI subjectAltName');
  if (uris.length > 1) return fail('multiple_uri_san', `the certificate has ${uris.length} URI subjectAltNames`);
  const applicationUrl = uris[0];
  if (!isHttpsUrl(applicationUrl)) {
    return fail('no_uri_san', 'the URI subjectAltName is not an https URL');
  }

  const roles = single(parsed, IB1_ROLES_OID, (der) => decodeRoles(new x509.Extension(der).value)) ?? [];
  const member = single(parsed, IB1_MEMBER_OID, (der) => decodeMember(new x509.Extension(der).value));
  const organisation = parsed.subjectName.getField('O')[0];
  return {
    applicationUrl,
    roles,
    ...(member === undefined ? {} : { member }),
    ...(organisation === undefined ? {} : { organisation }),
    thumbprintS256: Buffer.from(leaf.fingerprint256.replaceAll(':', ''), 'hex').toString('base64url'),
  };
}

/**
 * The one extension with this OID, decoded from its full DER; two copies are ambiguous (which one
 * would we believe?) and so refused outright.
 */
function single<T>(certificate: x509.X509Certificate, oid: string, decode: (der: ArrayBuffer) => T): T | undefined {
  const extensions = certificate.extensions.filter((extension) => extension.type === oid);
  if (extensions.length > 1) throw new CertificateError('bad_extension', `duplicated extension ${oid}`);
  return extensions.length === 0 ? undefined : decode(extensions[0].rawData);
}
