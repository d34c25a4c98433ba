// Low-level certificate issuance for the IB1 trust framework, built in-process with @peculiar/x509.
// Used by the dev trust framework and by tests to mint deliberately hostile certificates, so it takes
// explicit options (dates, serials, extra SANs/extensions) rather than hiding policy.
import { CertificateError } from './errors.ts';
import { IB1_MEMBER_OID, IB1_ROLES_OID, encodeMember, encodeRoles } from './ib1-extensions.ts';
import type { webcrypto } from 'node:crypto';
import { x509 } from './x509.ts';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

export type KeyAlgorithm = 'P-384' | 'P-256';

export interface Issuer {
  certificatePem: string;
  keyPem: string;
  certificate: x509.X509Certificate;
  keys: CryptoKeyPair;
}

export interface CaOptions {
  /** Common name of the CA. */
  name: string;
  keyAlgorithm?: KeyAlgorithm;
  notBefore?: Date;
  notAfter?: Date;
}

export interface IntermediateCaOptions extends CaOptions {
  /** basicConstraints pathLenConstraint; 0 (the default) means it may only issue end-entity certificates. */
  pathLength?: number;
}

export interface ClientLeafOptions {
  applicationUrl: string;
  organisation: string;
  country?: string;
  /** Role URLs (not labels). */
  roles: string[];
  member?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Additional URI SANs: only for tests of certificates the verifier must refuse. */
  extraUriSans?: string[];
  /** Leave out ib1Roles entirely (roles is then ignored). */
  omitRolesExtension?: boolean;
  /** Raw extensions appended verbatim, e.g. a garbage or duplicated ib1Roles for hostile tests. */
  extraExtensions?: x509.Extension[];
  /** Hexadecimal serial; random positive 128-bit-ish by default. */
  serialNumber?: string;
}

export interface ServerLeafOptions {
  dnsNames: string[];
  ipAddresses?: string[];
  notBefore?: Date;
  notAfter?: Date;
}

export interface LeafMaterial {
  certificatePem: string;
  keyPem: string;
  /** Leaf followed by its issuer: what a client presents in the TLS handshake. */
  bundlePem: string;
}

const CURVE_HASH: Record<KeyAlgorithm, 'SHA-384' | 'SHA-256'> = { 'P-384': 'SHA-384', 'P-256': 'SHA-256' };

// Backdated so a freshly issued certificate is already valid on a peer whose clock is slightly behind.
const CLOCK_SKEW_MS = 5 * 60 * 1000;

function defaultNotBefore(): Date {
  return new Date(Date.now() - CLOCK_SKEW_MS);
}

function addMonths(date: Date, months: number): Date {
  const result = new Date(date);
  result.setUTCMonth(result.getUTCMonth() + months);
  return result;
}

async function generateKeys(curve: KeyAlgorithm): Promise<CryptoKeyPair> {
  // Extractable so the private key can be exported to PKCS#8 and written to disk.
  return crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: curve }, true, ['sign', 'verify']);
}

function curveOf(key: CryptoKey): KeyAlgorithm {
  const curve = (key.algorithm as webcrypto.EcKeyAlgorithm).namedCurve;
  if (key.algorithm.name !== 'ECDSA' || (curve !== 'P-256' && curve !== 'P-384')) {
    throw new CertificateError('invalid_argument', `unsupported issuer key ${key.algorithm.name} ${curve ?? ''}`);
  }
  return curve;
}

/** The signature hash follows the signer's curve strength (P-384 signs with SHA-384). */
function signingAlgorithm(signingKey: CryptoKey): webcrypto.EcdsaParams {
  return { name: 'ECDSA', hash: CURVE_HASH[curveOf(signingKey)] };
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY') + '\n';
}

function certificatePem(certificate: x509.X509Certificate): string {
  return certificate.toString('pem') + '\n';
}

/** Random positive serial: top bit cleared (DER INTEGER sign) and second bit set so the encoding is minimal. */
function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] & 0x7f) | 0x40;
  return Buffer.from(bytes).toString('hex');
}

/** AKI from the issuer *certificate* (not its key), so a forged Issuer with the wrong key yields a plausible-looking forgery for tests. */
async function authorityKeyIdentifier(issuer: Issuer): Promise<x509.AuthorityKeyIdentifierExtension> {
  const ski = issuer.certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return new x509.AuthorityKeyIdentifierExtension(ski.keyId);
  return x509.AuthorityKeyIdentifierExtension.create(issuer.certificate.publicKey);
}

/**
 * Builds a subject with explicitly typed values: peculiar's string/JSON forms unescape quotes and
 * backslashes, which would silently alter organisation names such as `Foo "Bar" Ltd`.
 */
function distinguishedName(attributes: Array<[type: string, value: string]>): x509.Name {
  return new x509.Name(
    attributes.map(([type, value]) => ({
      // countryName is PrintableString by definition (RFC 5280 appendix A); everything else UTF8String.
      [type]: [type === 'C' ? { printableString: value } : { utf8String: value }],
    })),
  );
}

function caExtensions(pathLength: number | undefined): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
  ];
}

async function toIssuer(certificate: x509.X509Certificate, keys: CryptoKeyPair): Promise<Issuer> {
  return { certificatePem: certificatePem(certificate), keyPem: await exportKeyPem(keys.privateKey), certificate, keys };
}

export async function createRootCa(options: CaOptions): Promise<Issuer> {
  const keys = await generateKeys(options.keyAlgorithm ?? 'P-384');
  const notBefore = options.notBefore ?? defaultNotBefore();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: distinguishedName([['CN', options.name]]),
    notBefore,
    notAfter: options.notAfter ?? addMonths(notBefore, 12 * 10),
    keys,
    signingAlgorithm: signingAlgorithm(keys.privateKey),
    extensions: [...caExtensions(undefined), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)],
  });
  return toIssuer(certificate, keys);
}

export async function createIntermediateCa(parent: Issuer, options: IntermediateCaOptions): Promise<Issuer> {
  const keys = await generateKeys(options.keyAlgorithm ?? 'P-256');
  const notBefore = options.notBefore ?? defaultNotBefore();
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: distinguishedName([['CN', options.name]]),
    issuer: parent.certificate.subjectName,
    notBefore,
    notAfter: options.notAfter ?? addMonths(notBefore, 12 * 5),
    publicKey: keys.publicKey,
    signingKey: parent.keys.privateKey,
    signingAlgorithm: signingAlgorithm(parent.keys.privateKey),
    extensions: [
      ...caExtensions(options.pathLength ?? 0),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await authorityKeyIdentifier(parent),
    ],
  });
  return toIssuer(certificate, keys);
}

async function issueLeaf(
  issuer: Issuer,
  subject: x509.Name,
  notBefore: Date | undefined,
  notAfter: Date | undefined,
  serialNumber: string | undefined,
  extensions: x509.Extension[],
): Promise<LeafMaterial> {
  const keys = await generateKeys('P-256');
  const start = notBefore ?? defaultNotBefore();
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber ?? randomSerial(),
    subject,
    issuer: issuer.certificate.subjectName,
    notBefore: start,
    notAfter: notAfter ?? addMonths(start, 12),
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: signingAlgorithm(issuer.keys.privateKey),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await authorityKeyIdentifier(issuer),
      ...extensions,
    ],
  });
  const pem = certificatePem(certificate);
  return { certificatePem: pem, keyPem: await exportKeyPem(keys.privateKey), bundlePem: pem + issuer.certificatePem };
}

/** An IB1 client (member application) certificate: subject C/O/CN=<application URL>, one URI SAN, IB1 extensions. */
export async function issueClientLeaf(issuer: Issuer, options: ClientLeafOptions): Promise<LeafMaterial> {
  const extensions: x509.Extension[] = [
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    new x509.SubjectAlternativeNameExtension(
      [options.applicationUrl, ...(options.extraUriSans ?? [])].map((value) => ({ type: 'url', value })),
    ),
  ];
  if (!options.omitRolesExtension) extensions.push(new x509.Extension(IB1_ROLES_OID, false, encodeRoles(options.roles)));
  if (options.member !== undefined) extensions.push(new x509.Extension(IB1_MEMBER_OID, false, encodeMember(options.member)));
  extensions.push(...(options.extraExtensions ?? []));
  const subject = distinguishedName([
    ['C', options.country ?? 'GB'],
    ['O', options.organisation],
    ['CN', options.applicationUrl],
  ]);
  return issueLeaf(issuer, subject, options.notBefore, options.notAfter, options.serialNumber, extensions);
}

/** A TLS server certificate (serverAuth) for the given DNS names and IP addresses. */
export async function issueServerLeaf(issuer: Issuer, options: ServerLeafOptions): Promise<LeafMaterial> {
  const names = [
    ...options.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (names.length === 0) throw new CertificateError('invalid_argument', 'a server certificate needs at least one name');
  const extensions: x509.Extension[] = [
    // ECDSA keys only sign in TLS 1.2+/1.3 handshakes, so digitalSignature is the only key usage needed.
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension(names),
  ];
  return issueLeaf(issuer, distinguishedName([['CN', names[0].value]]), options.notBefore, options.notAfter, undefined, extensions);
}

/** Loads an issuer from PEM files, checking that the private key belongs to the certificate. */
export async function loadIssuer(certPem: string, keyPem: string): Promise<Issuer> {
  let certificate: x509.X509Certificate;
  try {
    certificate = new x509.X509Certificate(certPem);
  } catch (error) {
    throw new CertificateError('invalid_argument', 'issuer certificate is not a valid PEM certificate', { cause: error });
  }
  const publicKey = await certificate.publicKey.export();
  const curve = curveOf(publicKey);
  let privateKey: CryptoKey;
  try {
    const der = x509.PemConverter.decodeFirst(keyPem);
    privateKey = await crypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: curve }, true, ['sign']);
  } catch (error) {
    throw new CertificateError('invalid_argument', 'issuer key is not a PKCS#8 key for the certificate curve', { cause: error });
  }
  // Sign-and-verify proves the pair matches; otherwise we would silently issue unverifiable certificates.
  const probe = crypto.getRandomValues(new Uint8Array(32));
  const algorithm = { name: 'ECDSA', hash: CURVE_HASH[curve] };
  const signature = await crypto.subtle.sign(algorithm, privateKey, probe);
  if (!(await crypto.subtle.verify(algorithm, publicKey, signature, probe))) {
    throw new CertificateError('key_mismatch', 'issuer private key does not match the issuer certificate');
  }
  return { certificatePem: certificatePem(certificate), keyPem, certificate, keys: { publicKey, privateKey } };
}

export interface RevokedEntry {
  /** Hexadecimal serial of the revoked certificate (any case, leading zeros allowed). */
  serialNumber: string;
  /** Default: the CRL's thisUpdate. */
  revokedAt?: Date;
  reason?: x509.X509CrlReason;
}

export interface CrlOptions {
  /** Serials (hex) or entries with a date and reason. Default: none (an empty CRL). */
  revokedSerials?: Array<string | RevokedEntry>;
  /** Default: now. */
  thisUpdate?: Date;
  /** Default: thisUpdate + 7 days. */
  nextUpdate?: Date;
  /** cRLNumber extension; must grow with every CRL. Default: thisUpdate in whole seconds (monotonic without state). */
  crlNumber?: bigint | number;
}

export interface CrlMaterial {
  /** PEM with the RFC 7468 label `X509 CRL`. */
  pem: string;
  der: Uint8Array;
  crl: x509.X509Crl;
}

const CRL_NUMBER_OID = '2.5.29.20';
const DEFAULT_CRL_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000;

/** DER INTEGER of a non-negative value (the cRLNumber is at most 20 octets, so the length is one byte). */
function derInteger(value: bigint): Uint8Array {
  if (value < 0n) throw new CertificateError('invalid_argument', 'a CRL number cannot be negative');
  let hex = value.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (parseInt(hex[0], 16) >= 8) hex = `00${hex}`;
  const body = Buffer.from(hex, 'hex');
  if (body.length > 21) throw new CertificateError('invalid_argument', 'a CRL number has at most 20 octets');
  return Uint8Array.from([0x02, body.length, ...body]);
}

/**
 * A CRL signed by `issuer` (X.509 v2, with authorityKeyIdentifier and cRLNumber), for tests and the
 * dev `pki revoke` command. The CRL must list every revoked serial of the issuer: it replaces the last one.
 */
export async function issueCrl(issuer: Issuer, options: CrlOptions = {}): Promise<CrlMaterial> {
  const thisUpdate = options.thisUpdate ?? new Date();
  const nextUpdate = options.nextUpdate ?? new Date(thisUpdate.getTime() + DEFAULT_CRL_LIFETIME_MS);
  if (nextUpdate.getTime() <= thisUpdate.getTime()) throw new CertificateError('invalid_argument', 'a CRL nextUpdate must be after its thisUpdate');
  const crlNumber = BigInt(options.crlNumber ?? Math.floor(thisUpdate.getTime() / 1000));
  const entries = (options.revokedSerials ?? []).map((entry) => {
    const { serialNumber, revokedAt, reason } = typeof entry === 'string' ? { serialNumber: entry } as RevokedEntry : entry;
    if (!/^[0-9a-f]+$/i.test(serialNumber)) throw new CertificateError('invalid_argument', `not a hexadecimal serial number: ${JSON.stringify(serialNumber)}`);
    return { serialNumber, revocationDate: revokedAt ?? thisUpdate, ...(reason === undefined ? {} : { reason }) };
  });
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.certificate.subjectName,
    thisUpdate,
    nextUpdate,
    entries,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: signingAlgorithm(issuer.keys.privateKey),
    extensions: [await authorityKeyIdentifier(issuer), new x509.Extension(CRL_NUMBER_OID, false, derInteger(crlNumber))],
  });
  const der = new Uint8Array(crl.rawData);
  return { pem: x509.PemConverter.encode(crl.rawData, 'X509 CRL') + '\n', der, crl };
}
