// Verification of IB1 provenance records: what ib1-provenance's Record.verify checks (see the doc
// comment of record.ts), plus the stricter checks listed there. Synchronous: node:crypto only.
import { X509Certificate, verify as verifySignature } from 'node:crypto';
import { type SignerInfo, SigningCertificateTrust, decimalSerial, parseCertificatePem } from './certificates.ts';
import { decodeBase64UrlPadded, parseTimestamp } from './encoding.ts';
import { ProvenanceError } from './errors.ts';
import { CONTAINER_FORMAT_VERSION, type Container, type EncodedRecord, IB1_TRUST_FRAMEWORK, dataForSigning, decodeStep, parseRecord, splitContainer } from './record.ts';

export type { SignerInfo } from './certificates.ts';

/** A decoded step with who signed it, as ib1-provenance's `Record.decoded()` gives it. */
export interface VerifiedStep {
  id: string;
  timestamp: string;
  type: string;
  _signature: {
    /** The signer of the container holding this step. */
    signed: SignerInfo;
    /** Signers of the containers that include that one, outermost first. */
    includedBy: SignerInfo[];
  };
  /** The step's other fields (JSON values). */
  [field: string]: unknown;
}

export interface VerifiedRecord {
  trustFramework: string;
  origins: string[];
  /** Every step, depth-first in container order (earliest signed first). */
  steps: VerifiedStep[];
  /** The record as received (re-encode or forward this, never a re-serialisation of `steps`). */
  encoded: EncodedRecord;
}

export interface ProvenanceVerifierOptions {
  /** PEM of the trusted signing CA root(s). */
  signingRootsPem: string;
  /** PEM of known signing issuers, for records that embed only the signing certificate. */
  intermediatesPem?: string;
  /** The only `ib1:provenance` accepted (default: the IB1 Core Trust Framework). */
  trustFramework?: string;
  /**
   * Certificates for a serial the record does not embed (IB1's CertificatesProviderLocal /
   * a Directory look-up): the signing certificate first, then issuers. Default: none.
   */
  certificatesForSerial?: (serial: string) => X509Certificate[] | undefined;
  /** How far a signing timestamp may be ahead of the verifier's clock (default 5 minutes). */
  maxClockSkewMs?: number;
}

export interface VerifyOptions {
  /** The verifier's clock (default now); signing timestamps beyond it plus the skew are refused. */
  now?: Date;
}

const DEFAULT_CLOCK_SKEW_MS = 5 * 60 * 1000;
/** Step fields that refer to other steps by id (IB1's transfer, receipt, process and permission links). */
const REFERENCE_FIELDS = ['of', 'transfer', 'inputs', 'permissions'] as const;
const utf8 = new TextEncoder();

export class ProvenanceVerifier {
  readonly #trust: SigningCertificateTrust;
  readonly #trustFramework: string;
  readonly #certificatesForSerial: ((serial: string) => X509Certificate[] | undefined) | undefined;
  readonly #maxClockSkewMs: number;

  constructor(options: ProvenanceVerifierOptions) {
    this.#trust = new SigningCertificateTrust({ rootsPem: options.signingRootsPem, intermediatesPem: options.intermediatesPem });
    this.#trustFramework = options.trustFramework ?? IB1_TRUST_FRAMEWORK;
    this.#certificatesForSerial = options.certificatesForSerial;
    this.#maxClockSkewMs = options.maxClockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
  }

  /** Verifies a record (parsed or JSON text); throws ProvenanceError with the first failure. */
  verify(input: unknown, options: VerifyOptions = {}): VerifiedRecord {
    const record = parseRecord(input);
    if (record['ib1:provenance'] !== this.#trustFramework) {
      throw new ProvenanceError('wrong_trust_framework', `the record is for ${JSON.stringify(record['ib1:provenance'])}, not ${this.#trustFramework}`);
    }
    const latest = (options.now ?? new Date()).getTime() + this.#maxClockSkewMs;
    const steps: VerifiedStep[] = [];
    this.#verifyContainer(record, record.steps, [], Number.POSITIVE_INFINITY, latest, steps);

    const origins = steps.filter((step) => step.type === 'origin').map((step) => step.id);
    if (origins.length !== record.origins.length || origins.some((id, index) => record.origins[index] !== id)) {
      throw new ProvenanceError('origins_mismatch', 'origins property does not match the origin steps in the record');
    }
    checkStepOrder(steps);
    return { trustFramework: record['ib1:provenance'], origins: [...record.origins], steps, encoded: record };
  }

  #verifyContainer(
    record: EncodedRecord,
    container: Container,
    includedBy: SignerInfo[],
    notAfter: number,
    latest: number,
    steps: VerifiedStep[],
  ): void {
    const { data, block } = splitContainer(container);
    const [version, serial, signedAtText, signatureText] = block;
    if (version !== CONTAINER_FORMAT_VERSION) throw new ProvenanceError('unsupported_version', `cannot decode container format version ${version}`);
    if (!/^(?:0|-?[1-9][0-9]*)$/.test(serial)) throw new ProvenanceError('malformed', `bad certificate serial number in record: ${JSON.stringify(serial)}`);
    const signedAt = parseTimestamp(signedAtText, 'a signing timestamp');
    if (signedAt.getTime() > latest) throw new ProvenanceError('signed_in_future', `a container is signed at ${signedAtText}, in the future`);
    if (signedAt.getTime() > notAfter) {
      throw new ProvenanceError('step_order', `an included container is signed at ${signedAtText}, after the container that includes it`);
    }
    const signature = decodeBase64UrlPadded(signatureText, 'a signature');

    const certificates = this.#certificates(record, serial);
    const { signer } = this.#trust.verify(certificates, signedAt);
    const signedData = dataForSigning(record['ib1:provenance'], data, [String(version), serial, signedAtText]);
    let valid = false;
    try {
      valid = verifySignature('sha256', utf8.encode(signedData), { key: certificates[0].publicKey, dsaEncoding: 'der' }, signature);
    } catch {
      valid = false; // not DER, or not a signature for this key type
    }
    if (!valid) throw new ProvenanceError('bad_signature', `the signature of ${signer.name} (serial ${serial}) signed at ${signedAtText} does not match`);

    for (const entry of data) {
      if (typeof entry === 'string') {
        steps.push({ ...decodeStep(entry), _signature: { signed: structuredClone(signer), includedBy: structuredClone(includedBy) } });
      } else {
        this.#verifyContainer(record, entry as Container, [...includedBy, signer], signedAt.getTime(), latest, steps);
      }
    }
  }

  /** The serial's certificate path: embedded `[PEM, issuer serials...]` first, else the local look-up. */
  #certificates(record: EncodedRecord, serial: string): X509Certificate[] {
    const embedded = record.certificates?.[serial];
    let certificates: X509Certificate[] | undefined;
    if (embedded) {
      const [leafPem, ...issuerSerials] = embedded;
      certificates = [parseCertificatePem(leafPem, `the certificate of serial ${serial}`)];
      for (const issuerSerial of issuerSerials) {
        const issuer = record.certificates?.[issuerSerial];
        if (!issuer) throw new ProvenanceError('unknown_certificate', `issuer certificate ${issuerSerial} is not present in the record`);
        certificates.push(parseCertificatePem(issuer[0], `the certificate of serial ${issuerSerial}`));
      }
    } else {
      certificates = this.#certificatesForSerial?.(serial);
    }
    if (!certificates || certificates.length === 0) {
      throw new ProvenanceError('unknown_certificate', `certificate serial ${serial} is not present in the record nor known locally`);
    }
    if (decimalSerial(certificates[0]) !== serial) {
      throw new ProvenanceError('untrusted_certificate', `the certificate given for serial ${serial} has serial ${decimalSerial(certificates[0])}`);
    }
    return certificates;
  }
}

/** Unique ids, and every reference to a step points to one that comes earlier. */
function checkStepOrder(steps: VerifiedStep[]): void {
  const position = new Map<string, number>();
  steps.forEach((step, index) => {
    if (position.has(step.id)) throw new ProvenanceError('step_order', `step id ${step.id} appears more than once`);
    position.set(step.id, index);
  });
  steps.forEach((step, index) => {
    for (const field of REFERENCE_FIELDS) {
      const value = step[field];
      const references = typeof value === 'string' ? [value] : Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
      for (const reference of references) {
        const at = position.get(reference);
        // A reference to a step outside the record is not an ordering problem (it may be in another record).
        if (at !== undefined && at >= index) {
          throw new ProvenanceError('step_order', `${step.type} step ${step.id} refers (${field}) to step ${reference}, which comes after it`);
        }
      }
    }
  });
}
