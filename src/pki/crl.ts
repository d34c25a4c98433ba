// Certificate revocation lists: where they come from (URL or file), how their bytes are read, and how a
// CRL is decoded and checked against the CA certificates we trust before a single entry is believed.
// Everything here runs at load time (async is fine); per-request lookups live in revocation-list-cache.ts.
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';

import { certificatesFromPemBundle } from './client-certificate.ts';
import { x509 } from './x509.ts';

/** A place a CRL is read from. One source may hold several CRLs (a PEM bundle), e.g. root's and issuer's. */
export type CrlSource =
  | {
      kind: 'url';
      /** http or https. CRLs are signed, so plain http (the usual CRL distribution point) is safe to read. */
      url: string;
      /** PEM CA certificate(s) to trust for an https URL instead of the system roots (dev and tests). */
      ca?: string;
    }
  | { kind: 'file'; path: string };

/** A CRL whose signature verified against a configured CA certificate. */
export interface VerifiedCrl {
  /** The CA certificate that signed it (one of the configured CA certificates). */
  issuer: X509Certificate;
  /** Single-line subject of the issuer, for logs and status. */
  issuerSubject: string;
  thisUpdate: Date;
  nextUpdate: Date;
  crlNumber?: bigint;
  /** Normalised serial numbers (see normaliseSerial). */
  revoked: ReadonlySet<string>;
}

export class CrlError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'CrlError';
  }
}

/** Serial numbers compare as lower-case hex without leading zeros (`00A1b2` and `a1B2` are the same). */
export function normaliseSerial(serial: string): string {
  const hex = serial.replaceAll(':', '').trim().toLowerCase().replace(/^0+/, '');
  return hex === '' ? '0' : hex;
}

/** A source's name in logs, status and errors. */
export function describeSource(source: CrlSource): string {
  return source.kind === 'url' ? source.url : source.path;
}

/**
 * Sources from comma-separated configuration values (e.g. CRL_URLS and CRL_FILES). Throws a one-line
 * error naming the bad entry. `ca` applies to every https URL; relative files resolve against `cwd`.
 */
export function crlSourcesFromConfig(config: { urls?: string; files?: string; ca?: string; cwd?: string }): CrlSource[] {
  const list = (raw: string | undefined) => (raw ?? '').split(',').map((entry) => entry.trim()).filter(Boolean);
  const urls = list(config.urls).map((value): CrlSource => {
    const url = URL.parse(value);
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password) {
      throw new CrlError(`CRL_URLS: every entry must be an http(s) URL without credentials, got ${JSON.stringify(value)}`);
    }
    return { kind: 'url', url: url.href, ...(config.ca ? { ca: config.ca } : {}) };
  });
  const files = list(config.files).map((file): CrlSource => ({ kind: 'file', path: path.resolve(config.cwd ?? process.cwd(), file) }));
  return [...urls, ...files];
}

export interface ReadOptions {
  timeoutMs: number;
  /** Larger responses or files are refused. */
  maxBytes: number;
}

/** The raw bytes of a source. Throws a CrlError with a one-line message. */
export async function readCrlSource(source: CrlSource, options: ReadOptions): Promise<Uint8Array> {
  if (source.kind === 'file') {
    try {
      const info = await stat(source.path);
      if (info.size > options.maxBytes) throw new CrlError(`larger than ${options.maxBytes} bytes`);
      return await readFile(source.path);
    } catch (error) {
      if (error instanceof CrlError) throw error;
      throw new CrlError(`cannot read: ${oneLine((error as Error).message)}`, { cause: error });
    }
  }
  return fetchBytes(new URL(source.url), source.ca, options);
}

function fetchBytes(url: URL, ca: string | undefined, options: ReadOptions): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => {
    const fail = (error: Error) => reject(error instanceof CrlError ? error : new CrlError(oneLine(error.message), { cause: error }));
    const requestOptions: https.RequestOptions = {
      headers: { accept: 'application/pkix-crl, application/x-pem-file, */*;q=0.5' },
      ...(url.protocol === 'https:' && ca ? { ca } : {}),
      // No connection reuse: a fetch an hour (or a retry a minute) apart gains nothing from it.
      agent: false,
    };
    const request = (url.protocol === 'https:' ? https : http).get(url, requestOptions, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        fail(new CrlError(`HTTP ${response.statusCode}${response.headers.location ? ` (redirect to ${response.headers.location} not followed)` : ''}`));
        request.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > options.maxBytes) request.destroy(new CrlError(`response larger than ${options.maxBytes} bytes`));
        else chunks.push(chunk);
      });
      response.on('end', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks));
      });
      response.on('error', fail);
    });
    const timer = setTimeout(() => request.destroy(new CrlError(`no answer within ${Math.round(options.timeoutMs)} ms`)), options.timeoutMs);
    request.on('error', (error) => {
      clearTimeout(timer);
      fail(error);
    });
    request.on('close', () => clearTimeout(timer));
  });
}

const PEM_CRL = /-----BEGIN (?:X509 )?CRL-----[\s\S]+?-----END (?:X509 )?CRL-----/g;

/** Decodes DER (one CRL) or PEM (one or more `X509 CRL` blocks; the non-standard `CRL` label too). */
export function decodeCrls(bytes: Uint8Array): x509.X509Crl[] {
  // Copies into a fresh ArrayBuffer: Node's Buffers are often views into a shared pool.
  const parse = (der: Uint8Array) => new x509.X509Crl(new Uint8Array(der).buffer);
  try {
    const text = Buffer.from(bytes).toString('latin1');
    if (text.includes('-----BEGIN')) {
      const blocks = text.match(PEM_CRL) ?? [];
      if (blocks.length === 0) throw new CrlError('PEM without an X509 CRL block');
      return blocks.map((block) => parse(Buffer.from(block.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')));
    }
    return [parse(bytes)];
  } catch (error) {
    if (error instanceof CrlError) throw error;
    throw new CrlError(`not a DER or PEM CRL: ${oneLine((error as Error).message)}`, { cause: error });
  }
}

const CRL_NUMBER_OID = '2.5.29.20';
/** CRL extensions we understand; RFC 5280 §5.2: a CRL with any other critical extension must not be used. */
const UNDERSTOOD_CRL_EXTENSIONS = new Set(['2.5.29.35' /* authorityKeyIdentifier */, '2.5.29.18' /* issuerAltName */, CRL_NUMBER_OID]);
/** Entry extensions we understand; a critical certificateIssuer (indirect CRL) is refused. */
const UNDERSTOOD_ENTRY_EXTENSIONS = new Set(['2.5.29.21' /* reasonCode */, '2.5.29.24' /* invalidityDate */]);

/** A configured CA certificate in both libraries' forms. */
export interface CaCertificate {
  node: X509Certificate;
  peculiar: x509.X509Certificate;
}

/** CA certificates from a PEM bundle (non-CA certificates are ignored: they cannot sign CRLs). */
export function caCertificatesFromPem(pem: string): CaCertificate[] {
  return certificatesFromPemBundle(pem)
    .filter((certificate) => certificate.ca)
    .map((node) => ({ node, peculiar: new x509.X509Certificate(node.raw) }));
}

function sameBytes(a: ArrayBuffer, b: ArrayBuffer): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

/**
 * Finds the configured CA certificate that signed `crl` (same name, matching key identifier when both
 * say one, key allowed to sign CRLs, valid signature) and reads the entries. Throws a CrlError otherwise.
 */
export async function verifyCrl(crl: x509.X509Crl, cas: readonly CaCertificate[]): Promise<VerifiedCrl> {
  const crlKeyId = crl.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  const named = cas.filter(({ peculiar }) => sameBytes(peculiar.subjectName.toArrayBuffer(), crl.issuerName.toArrayBuffer()));
  if (named.length === 0) throw new CrlError(`CRL issuer ${crl.issuer} is not a configured CA certificate`);
  let signer: CaCertificate | undefined;
  for (const candidate of named) {
    const keyId = candidate.peculiar.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    if (crlKeyId && keyId && crlKeyId.toLowerCase() !== keyId.toLowerCase()) continue;
    const usage = candidate.peculiar.getExtension(x509.KeyUsagesExtension);
    if (usage && !(usage.usages & x509.KeyUsageFlags.cRLSign)) continue;
    let verified = false;
    try {
      verified = await crl.verify({ publicKey: candidate.peculiar.publicKey });
    } catch {
      verified = false;
    }
    if (verified) {
      signer = candidate;
      break;
    }
  }
  if (!signer) throw new CrlError(`CRL signature does not verify against the configured CA certificate ${crl.issuer}`);

  const unknownCritical = crl.extensions.find((extension) => extension.critical && !UNDERSTOOD_CRL_EXTENSIONS.has(extension.type));
  if (unknownCritical) throw new CrlError(`CRL of ${crl.issuer} has an unsupported critical extension ${unknownCritical.type}`);
  const nextUpdate = crl.nextUpdate;
  if (!nextUpdate) throw new CrlError(`CRL of ${crl.issuer} has no nextUpdate`);

  const revoked = new Set<string>();
  for (const entry of crl.entries) {
    const critical = entry.extensions.find((extension) => extension.critical && !UNDERSTOOD_ENTRY_EXTENSIONS.has(extension.type));
    if (critical) throw new CrlError(`CRL of ${crl.issuer} has an entry with an unsupported critical extension ${critical.type}`);
    revoked.add(normaliseSerial(entry.serialNumber));
  }
  const number = crl.extensions.find((extension) => extension.type === CRL_NUMBER_OID);
  const crlNumber = number ? decodeInteger(number.value) : undefined;
  return {
    issuer: signer.node,
    issuerSubject: signer.node.subject.replaceAll('\n', ', '),
    thisUpdate: crl.thisUpdate,
    nextUpdate,
    ...(crlNumber === undefined ? {} : { crlNumber }),
    revoked,
  };
}

/** Decodes a DER INTEGER (short or long length form); undefined if it is not one. */
function decodeInteger(der: ArrayBuffer): bigint | undefined {
  const bytes = new Uint8Array(der);
  if (bytes[0] !== 0x02 || bytes.length < 3) return undefined;
  let offset = 2;
  let length = bytes[1];
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 2) return undefined;
    length = 0;
    for (let i = 0; i < octets; i++) length = (length << 8) | bytes[2 + i];
    offset = 2 + octets;
  }
  if (length === 0 || offset + length !== bytes.length) return undefined;
  return BigInt(`0x${Buffer.from(bytes.subarray(offset)).toString('hex')}`);
}

/** Reads, decodes and verifies every CRL of a source. All must verify, or the whole load is refused. */
export async function loadCrlSource(source: CrlSource, cas: readonly CaCertificate[], options: ReadOptions): Promise<VerifiedCrl[]> {
  const crls = decodeCrls(await readCrlSource(source, options));
  return Promise.all(crls.map((crl) => verifyCrl(crl, cas)));
}

export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}
