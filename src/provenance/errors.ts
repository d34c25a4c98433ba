/** Machine-readable reasons a provenance record cannot be built, signed or believed; branch on `code`. */
export type ProvenanceErrorCode =
  /** Not the container structure of an IB1 record (or not valid base64url/JSON inside it). */
  | 'malformed'
  /** The record's `ib1:provenance` is not the trust framework the caller expects. */
  | 'wrong_trust_framework'
  /** A signature block with a container format version other than 0. */
  | 'unsupported_version'
  /** A step the caller asked to add is not acceptable (own `id`, `_` keys, non-JSON values). */
  | 'invalid_step'
  /** No certificate for a signature block's serial (neither embedded nor known locally). */
  | 'unknown_certificate'
  /** The signing certificate does not chain to a configured signing CA, or has the wrong shape. */
  | 'untrusted_certificate'
  /** A certificate of the chain was not valid at the signing timestamp. */
  | 'certificate_not_valid'
  /** The ECDSA signature does not match the signed data. */
  | 'bad_signature'
  /** A signing timestamp later than the verifier's clock allows. */
  | 'signed_in_future'
  /** Steps out of order: a reference to a later step, a repeated id, an included record signed after its includer. */
  | 'step_order'
  /** The record's `origins` list is not the ids of its origin steps, in order. */
  | 'origins_mismatch'
  /** The signer's certificate or key cannot be used (mismatched pair, not valid now, not EC). */
  | 'invalid_signer';

export class ProvenanceError extends Error {
  readonly code: ProvenanceErrorCode;

  constructor(code: ProvenanceErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ProvenanceError';
    this.code = code;
  }
}
