/**
 * IB1 provenance records, byte-compatible with IB1's reference library `ib1-provenance` 0.5.3 (PyPI;
 * modules `ib1.provenance.record`, `ib1.provenance.signing`, `ib1.provenance.certificates`,
 * `ib1.provenance.identifier`), as read from its installed source.
 *
 * ## The encoded record (record.py `Record.sign` / `Record.encoded`)
 *
 * ```json
 * {
 *   "ib1:provenance": "https://registry.core.trust.ib1.org/trust-framework",
 *   "origins": ["<id of each origin step, in step order>"],
 *   "steps": [ <container> ],
 *   "certificates": { "<serial>": ["<PEM>", "<issuer serial>", ...], "<issuer serial>": ["<PEM>"] }
 * }
 * ```
 * Key order as written: `ib1:provenance`, `origins`, `steps`, `certificates` (the last only when
 * non-empty). `ib1:provenance` is the trust framework URL; a verifier refuses any other.
 *
 * ## Containers: `steps` is one signed container
 *
 * `[entry, entry, ..., [0, "<serial>", "<signing timestamp>", "<signature>"]]`
 * - An entry is either an encoded step (a string) or a whole container signed earlier (a nested
 *   array) that this signer includes: a received record's `steps` goes first, then records added with
 *   `add_record`, then this signer's new steps, in the order they were added.
 * - The last element is the signature block: container format version `0` (a JSON number; any other
 *   version is refused), the signing certificate's serial as a decimal string
 *   (`str(cert.serial_number)`, because JSON would round a large number; verifiers check
 *   `str(int(serial)) == serial`), the signing time `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds), and
 *   the signature.
 *
 * ## Steps (record.py `add_step`, `_encode_step`; identifier.py)
 *
 * A step is a JSON object `{"id", "timestamp", "type", ...fields}` in that key order: `id` is
 * `secrets.token_urlsafe(15)` (20 base64url characters, allocated by the library; a caller's `id` is
 * refused), `timestamp` the caller's or the time it was added (same format as above), then the
 * caller's other fields in their order. Keys starting with `_` are refused (`_signature` is what a
 * verifier adds). Encoding: `base64.urlsafe_b64encode(json.dumps(step, separators=(",", ":")))`,
 * i.e. compact JSON with Python's defaults (ensure_ascii: non-ASCII as `\uXXXX`; floats as Python's
 * repr) in the URL-safe base64 alphabet WITH `=` padding. See encoding.ts.
 *
 * Step types used by IB1 and Perseus (the library itself only knows `origin`): `permission`
 * (`scheme`, `account`, `allows: {licences, processes}`, `expires`), `origin` (`scheme`, `sourceType`,
 * `origin`, `originLicence`, `external`, `permissions`, `perseus:scheme`, `perseus:assurance`),
 * `transfer` (`scheme`, `of` (a step id), `to` (member URL), `standard`, `licence`, `service`, `path`,
 * `parameters`, `permissions`, `transaction`), `receipt` (`transfer`: a transfer step id) and
 * `process` (`scheme`, `inputs` (step ids), `process` (URL), `permissions`).
 *
 * ## What is signed (record.py `_data_for_signing`)
 *
 * The UTF-8 bytes of `".".join(parts)` where parts are: the trust framework URL; then for each entry
 * of the container except its signature block: an encoded step as is, a nested list as `"%"`, its
 * own flattening, `"&"` (the same rule recursively, *without* the trust framework; a nested
 * container's signature block is one more nested list, its version printing as `"0"`); then `"0"`,
 * the serial and the signing timestamp. A record including one earlier record and adding step s3:
 * `TF.%.s1.s2.%.0.123.2025-01-01T00:00:00Z.MEUC...=.&.&.s3.0.456.2025-01-02T00:00:00Z`.
 *
 * ## Signatures (signing.py `SignerInMemory.sign`)
 *
 * ECDSA with SHA-256 over those bytes with the signing certificate's key (P-256 in IB1), the DER
 * signature in padded base64url. The hash is SHA-256 whatever the curve.
 *
 * ## Certificates (record.py `Record.sign`, certificates.py)
 *
 * IB1 "signing" certificates come from a Signing CA separate from the Client CA (ib1-directory's
 * `create-ca --usage signing`) but have a client certificate's shape: subject `C, ST, O, CN=<application
 * URL>`, one URI subjectAltName (the application), ib1Roles (1.3.6.1.4.1.62329.1.1, SEQUENCE OF
 * UTF8String) and ib1Member (1.3.6.1.4.1.62329.1.3, UTF8String). A self-contained record
 * (`CertificatesProviderSelfContainedRecord`, the policy used here) embeds, the first time a serial
 * signs in the record, `certificates[serial] = [leaf PEM, issuer serials...]` and
 * `certificates[issuerSerial] = [issuer PEM]` (PEM as `public_bytes(PEM)`). Included records'
 * `certificates` are merged in. Without embedding (`CertificatesProviderLocal`), verifiers look the
 * serial up themselves (`<serial>-bundle.pem` files in IB1's local provider).
 *
 * ## Verification (record.py `Record.verify`, certificates.py `CertificateProviderBase.verify`)
 *
 * For every container, outermost first: version 0; canonical decimal serial; rebuild the signed
 * bytes; find the serial's certificate path; verify the chain to the configured Signing CA root *at the
 * signing timestamp* (cryptography's client-certificate policy: `PolicyBuilder().time(signedAt)
 * .build_client_verifier()`); verify the ECDSA signature with the leaf's key; then recurse into nested
 * containers. Each decoded step gets `_signature: {signed: <signer>, includedBy: [<signers of the
 * enclosing containers, outermost first>]}` with signer `{member, name, application, roles}`.
 * Finally `origins` must equal the ids of the `origin` steps in depth-first order.
 *
 * This implementation verifies the same and, being the stricter side, also refuses: a serial that
 * is not the certificate's own, a signing time in the future, an included container signed after the
 * container that includes it, repeated step ids, and steps referring (`of`, `transfer`, `inputs`,
 * `permissions`) to a step that comes later; see verify.ts. Certificate revocation is not part of
 * IB1's library and is not checked here either.
 */
import { randomBytes } from 'node:crypto';
import { certificatePem, decimalSerial, validityOf } from './certificates.ts';
import { type JsonValue, base64UrlPadded, decodeBase64UrlPadded, isoSeconds, pythonJsonDumps } from './encoding.ts';
import { ProvenanceError } from './errors.ts';
import type { ProvenanceSigner } from './signer.ts';

export type { JsonValue } from './encoding.ts';

/** The IB1 Core Trust Framework: the `ib1:provenance` value of Perseus records. */
export const IB1_TRUST_FRAMEWORK = 'https://registry.core.trust.ib1.org/trust-framework';
export const CONTAINER_FORMAT_VERSION = 0;

/** `[version, serial, signing timestamp, signature]`. */
export type SignatureBlock = [version: number, serial: string, signedAt: string, signature: string];
/** Encoded steps and included containers, then the signature block last. */
export type Container = Array<string | Container | SignatureBlock>;

export interface EncodedRecord {
  'ib1:provenance': string;
  origins: string[];
  steps: Container;
  certificates?: Record<string, string[]>;
}

/** What a caller adds: `type` and any fields; `timestamp` defaults to now. `id` is allocated. */
export interface StepInput {
  type: string;
  timestamp?: string | Date;
  [field: string]: unknown;
}

/** A step as encoded: id, timestamp, type first, then the caller's fields. */
export interface Step {
  id: string;
  timestamp: string;
  type: string;
  [field: string]: JsonValue;
}

const MAX_DEPTH = 32;
const utf8 = new TextEncoder();

/** 15 random bytes in base64url: `secrets.token_urlsafe(15)`. */
export function newStepId(): string {
  return randomBytes(15).toString('base64url');
}

export function encodeStep(step: Step): string {
  return base64UrlPadded(utf8.encode(pythonJsonDumps(step)));
}

/** Decodes one encoded step (no signature check); `malformed` unless it is a JSON object with string `id` and `type`. */
export function decodeStep(encoded: string): Step {
  const bytes = decodeBase64UrlPadded(encoded, 'an encoded step');
  let step: unknown;
  try {
    step = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (error) {
    throw new ProvenanceError('malformed', 'an encoded step is not UTF-8 JSON', { cause: error });
  }
  if (typeof step !== 'object' || step === null || Array.isArray(step)) throw new ProvenanceError('malformed', 'an encoded step is not a JSON object');
  const { id, type } = step as Record<string, unknown>;
  if (typeof id !== 'string' || typeof type !== 'string') throw new ProvenanceError('malformed', 'an encoded step lacks a string id or type');
  return step as Step;
}

/**
 * The string a container's signature covers (record.py `_data_for_signing`): `data` is the container
 * without its signature block, `additional` is `["0", serial, signedAt]`.
 */
export function dataForSigning(trustFramework: string, data: Container, additional: string[]): string {
  return [trustFramework, ...flatten(data), ...additional].join('.');
}

function flatten(entries: Array<string | number | Container | SignatureBlock>): string[] {
  const parts: string[] = [];
  for (const entry of entries) {
    if (typeof entry === 'string') parts.push(entry);
    else if (typeof entry === 'number') parts.push(String(entry));
    else parts.push('%', flatten(entry).join('.'), '&');
  }
  return parts;
}

/** Splits a container into its entries and signature block (shape already checked by parseRecord). */
export function splitContainer(container: Container): { data: Container; block: SignatureBlock } {
  return { data: container.slice(0, -1), block: container[container.length - 1] as SignatureBlock };
}

/** Ids of origin steps, depth-first (record.py `_gather_origins`). */
function gatherOrigins(container: Container, origins: string[]): string[] {
  for (const entry of splitContainer(container).data) {
    if (typeof entry === 'string') {
      const step = decodeStep(entry);
      if (step.type === 'origin') origins.push(step.id);
    } else {
      gatherOrigins(entry as Container, origins);
    }
  }
  return origins;
}

/** Parses a record from JSON text or a parsed value and checks its structure; signatures are not checked. */
export function parseRecord(input: unknown): EncodedRecord {
  let value = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch (error) {
      throw new ProvenanceError('malformed', 'the provenance record is not JSON', { cause: error });
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProvenanceError('malformed', 'the provenance record is not a JSON object');
  const record = value as Record<string, unknown>;
  if (typeof record['ib1:provenance'] !== 'string') throw new ProvenanceError('malformed', 'the record has no ib1:provenance trust framework');
  if (!Array.isArray(record.origins) || !record.origins.every((origin) => typeof origin === 'string')) {
    throw new ProvenanceError('malformed', 'the record origins are not a list of step ids');
  }
  checkContainer(record.steps, 0);
  if (record.certificates !== undefined) {
    const certificates = record.certificates;
    if (typeof certificates !== 'object' || certificates === null || Array.isArray(certificates)) {
      throw new ProvenanceError('malformed', 'the record certificates are not an object');
    }
    for (const [serial, path] of Object.entries(certificates)) {
      if (!Array.isArray(path) || path.length === 0 || !path.every((item) => typeof item === 'string')) {
        throw new ProvenanceError('malformed', `the record certificates for ${serial} are not [PEM, issuer serials...]`);
      }
    }
  }
  return record as unknown as EncodedRecord;
}

function checkContainer(container: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new ProvenanceError('malformed', `the record nests containers deeper than ${MAX_DEPTH}`);
  if (!Array.isArray(container) || container.length === 0) throw new ProvenanceError('malformed', 'a container is not a non-empty list');
  const block = container[container.length - 1];
  if (!Array.isArray(block) || block.length !== 4 || !Number.isInteger(block[0]) || !block.slice(1).every((item) => typeof item === 'string')) {
    throw new ProvenanceError('malformed', 'a container does not end with a [version, serial, timestamp, signature] block');
  }
  for (const entry of container.slice(0, -1)) {
    if (typeof entry !== 'string') checkContainer(entry, depth + 1);
  }
}

/** The record as JSON text (what travels in a `provenance` field when text is wanted). */
export function encodeRecord(record: EncodedRecord): string {
  return JSON.stringify(record);
}

export interface SignOptions {
  /** Signing time (default now); whole seconds are kept. */
  now?: Date;
  /** Refuse to sign when the signing certificate is not valid at the signing time (default true). */
  checkCertificateValidity?: boolean;
}

/**
 * A record being built, as ib1-provenance's `Record`: start empty or from a received record (whose
 * signed container is kept as is and included), add steps and other records, then `sign`.
 * Verify a received record (ProvenanceVerifier) before building on it: signing asserts reliance on it.
 */
export class ProvenanceRecord {
  readonly trustFramework: string;
  readonly #base: EncodedRecord | undefined;
  readonly #records: EncodedRecord[] = [];
  readonly #steps: string[] = [];

  constructor(trustFramework: string = IB1_TRUST_FRAMEWORK, received?: EncodedRecord) {
    this.trustFramework = trustFramework;
    if (received !== undefined) {
      const record = parseRecord(received);
      if (record['ib1:provenance'] !== trustFramework) {
        throw new ProvenanceError('wrong_trust_framework', `the record is for ${record['ib1:provenance']}, not ${trustFramework}`);
      }
      this.#base = structuredClone(record);
    }
  }

  /** Adds a step and returns its new id (to refer to it from later steps). */
  addStep(input: StepInput): string {
    if (typeof input !== 'object' || input === null) throw new ProvenanceError('invalid_step', 'a step must be an object');
    const { type, timestamp, ...fields } = input;
    if ('id' in input) throw new ProvenanceError('invalid_step', 'a step may not contain an id: ids are allocated by addStep');
    if (typeof type !== 'string' || type.length === 0) throw new ProvenanceError('invalid_step', 'a step needs a type');
    const prohibited = Object.keys(fields).filter((key) => key.startsWith('_'));
    if (prohibited.length > 0) throw new ProvenanceError('invalid_step', `a step may not contain keys beginning with an underscore: ${prohibited.join(', ')}`);
    let time: string;
    if (timestamp === undefined) time = isoSeconds(new Date());
    else if (timestamp instanceof Date) time = isoSeconds(timestamp);
    else if (typeof timestamp === 'string' && timestamp.length > 0) time = timestamp;
    else throw new ProvenanceError('invalid_step', 'a step timestamp must be a Date or an ISO 8601 string');
    const id = newStepId();
    // Encoded now (Python deep-copies at this point): later changes to the caller's objects do not leak in.
    this.#steps.push(base64UrlPadded(utf8.encode(pythonJsonDumps({ id, timestamp: time, type, ...fields }))));
    return id;
  }

  /** Includes another (verified) record of the same trust framework, signed container as is. */
  addRecord(record: EncodedRecord): void {
    const parsed = parseRecord(record);
    if (parsed['ib1:provenance'] !== this.trustFramework) {
      throw new ProvenanceError('wrong_trust_framework', `cannot include a record for ${parsed['ib1:provenance']} in one for ${this.trustFramework}`);
    }
    this.#records.push(structuredClone(parsed));
  }

  /** Signs everything added so far into a new encoded record (this builder can go on being used). */
  async sign(signer: ProvenanceSigner, options: SignOptions = {}): Promise<EncodedRecord> {
    const now = options.now ?? new Date();
    const leaf = signer.certificates[0];
    if (leaf && (options.checkCertificateValidity ?? true)) {
      const { notBefore, notAfter } = validityOf(leaf);
      if (now < notBefore || now > notAfter) {
        throw new ProvenanceError('invalid_signer', `the signing certificate is not valid at ${now.toISOString()} (valid ${notBefore.toISOString()} to ${notAfter.toISOString()})`);
      }
    }
    const output: Container = [];
    const certificates: Record<string, string[]> = {};
    for (const included of [...(this.#base ? [this.#base] : []), ...this.#records]) {
      Object.assign(certificates, included.certificates ?? {});
      output.push(structuredClone(included.steps));
    }
    output.push(...this.#steps);

    const serial = signer.serial;
    const signedAt = isoSeconds(now);
    const data = dataForSigning(this.trustFramework, output, [String(CONTAINER_FORMAT_VERSION), serial, signedAt]);
    const signature = await signer.sign(utf8.encode(data));
    output.push([CONTAINER_FORMAT_VERSION, serial, signedAt, base64UrlPadded(signature)]);

    if (!Object.hasOwn(certificates, serial) && signer.includeCertificates) {
      const [first, ...issuers] = signer.certificates;
      certificates[serial] = [certificatePem(first), ...issuers.map(decimalSerial)];
      for (const issuer of issuers) certificates[decimalSerial(issuer)] = [certificatePem(issuer)];
    }
    const encoded: EncodedRecord = {
      'ib1:provenance': this.trustFramework,
      origins: gatherOrigins(output, []),
      steps: output,
    };
    if (Object.keys(certificates).length > 0) encoded.certificates = certificates;
    return encoded;
  }
}
