// Signers of IB1 provenance records: ECDSA over SHA-256 with the signing certificate's key, DER
// signatures, as ib1-provenance's SignerInMemory / SignerFiles (ib1/provenance/signing.py).
import { type KeyObject, X509Certificate, createPrivateKey, sign as signData, verify as verifyData } from 'node:crypto';
import { certificatesFromPemBundleSafe, decimalSerial } from './certificates.ts';
import { ProvenanceError } from './errors.ts';

export interface ProvenanceSigner {
  /** Decimal serial of the signing certificate (ib1-provenance: `str(certificates[0].serial_number)`). */
  readonly serial: string;
  /** Signing certificate first, then its issuer(s); embedded in records when `includeCertificates`. */
  readonly certificates: readonly X509Certificate[];
  /** Self-contained records carry the signer's certificate path in `certificates` (the IB1 default). */
  readonly includeCertificates: boolean;
  /** DER-encoded ECDSA signature over SHA-256 of `data` (async, so a KMS signer fits too). */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

export interface SignerFromPemOptions {
  /** The signing certificate, optionally followed by its issuer(s) (a bundle, as IB1's tooling writes it). */
  certificatePem: string;
  /** The signing certificate's private key: PKCS#8 or SEC1 ("EC PRIVATE KEY") PEM. */
  keyPem: string;
  /** Embed the certificate path in each record (default true: records verify without a Directory look-up). */
  includeCertificates?: boolean;
}

/** A signer from PEM text; refuses a key that does not belong to the certificate. */
export function signerFromPem(options: SignerFromPemOptions): ProvenanceSigner {
  const certificates = certificatesFromPemBundleSafe(options.certificatePem, 'signing certificate');
  if (certificates.length === 0) throw new ProvenanceError('invalid_signer', 'no signing certificate given');
  let key: KeyObject;
  try {
    key = createPrivateKey(options.keyPem);
  } catch (error) {
    throw new ProvenanceError('invalid_signer', 'the signing key is not a PEM private key', { cause: error });
  }
  if (key.asymmetricKeyType !== 'ec') throw new ProvenanceError('invalid_signer', `the signing key is ${key.asymmetricKeyType}, not EC`);
  const leaf = certificates[0];
  const probe = Buffer.from('ib1-provenance key check');
  if (!verifyData('sha256', probe, leaf.publicKey, signData('sha256', probe, key))) {
    throw new ProvenanceError('invalid_signer', 'the signing key does not belong to the signing certificate');
  }
  return {
    serial: decimalSerial(leaf),
    certificates,
    includeCertificates: options.includeCertificates ?? true,
    async sign(data) {
      return new Uint8Array(signData('sha256', data, { key, dsaEncoding: 'der' }));
    },
  };
}
