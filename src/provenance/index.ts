// IB1 provenance records (format: see the doc comment of record.ts).
export { ProvenanceError, type ProvenanceErrorCode } from './errors.ts';
export { type JsonValue, pythonJsonDumps } from './encoding.ts';
export {
  CONTAINER_FORMAT_VERSION,
  type Container,
  type EncodedRecord,
  IB1_TRUST_FRAMEWORK,
  ProvenanceRecord,
  type SignOptions,
  type SignatureBlock,
  type Step,
  type StepInput,
  decodeStep,
  encodeRecord,
  parseRecord,
} from './record.ts';
export { type ProvenanceSigner, type SignerFromPemOptions, signerFromPem } from './signer.ts';
export { type SignerInfo, SigningCertificateTrust } from './certificates.ts';
export { ProvenanceVerifier, type ProvenanceVerifierOptions, type VerifiedRecord, type VerifiedStep, type VerifyOptions } from './verify.ts';
export { type OriginInput, type ProvenanceContext, provenanceFor, withProvenance } from './perseus.ts';
