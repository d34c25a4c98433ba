import { type DevSigningAuthority, createDevSigningAuthority, issueDevSigningCertificate } from '../../src/provenance/dev-signing.ts';
import { certificatePem, decimalSerial } from '../../src/provenance/certificates.ts';
import { base64UrlPadded, isoSeconds } from '../../src/provenance/encoding.ts';
import { type Container, type EncodedRecord, IB1_TRUST_FRAMEWORK, type Step, dataForSigning, encodeStep } from '../../src/provenance/record.ts';
import { type ProvenanceSigner, signerFromPem } from '../../src/provenance/signer.ts';

export const SCHEME = 'https://registry.core.trust.ib1.org/scheme/perseus';
export const EDP_ROLE = `${SCHEME}/role/energy-data-provider`;
export const CAP_ROLE = `${SCHEME}/role/carbon-accounting-provider`;
export const EDP_APP = 'https://directory.core.trust.ib1.org/scheme/perseus/application/edp-1';
export const EDP_MEMBER = 'https://directory.core.trust.ib1.org/member/1001';
export const CAP_APP = 'https://directory.core.trust.ib1.org/scheme/perseus/application/cap-1';
export const CAP_MEMBER = 'https://directory.core.trust.ib1.org/member/2002';
export const BANK_MEMBER = 'https://directory.core.trust.ib1.org/member/3003';

export interface TestSigner {
  signer: ProvenanceSigner;
  /** Signing certificate + issuer. */
  bundlePem: string;
  keyPem: string;
}

export async function devSigner(
  authority: DevSigningAuthority,
  options: { applicationUrl?: string; organisation?: string; member?: string; roles?: string[]; notBefore?: Date; notAfter?: Date; includeCertificates?: boolean } = {},
): Promise<TestSigner> {
  const leaf = await issueDevSigningCertificate(authority, {
    applicationUrl: options.applicationUrl ?? EDP_APP,
    organisation: options.organisation ?? 'Example Energy Ltd',
    member: options.member ?? EDP_MEMBER,
    roles: options.roles ?? ['energy-data-provider'],
    notBefore: options.notBefore,
    notAfter: options.notAfter,
  });
  return {
    signer: signerFromPem({ certificatePem: leaf.bundlePem, keyPem: leaf.keyPem, includeCertificates: options.includeCertificates }),
    bundlePem: leaf.bundlePem,
    keyPem: leaf.keyPem,
  };
}

const utf8 = new TextEncoder();

/**
 * Signs steps exactly as given (ids included), through the format's primitives rather than the
 * builder: what another implementation, or a careless author, could produce.
 */
export async function signRaw(signer: ProvenanceSigner, steps: Step[]): Promise<EncodedRecord> {
  const data: Container = steps.map(encodeStep);
  const signedAt = isoSeconds(new Date());
  const signature = await signer.sign(utf8.encode(dataForSigning(IB1_TRUST_FRAMEWORK, data, ['0', signer.serial, signedAt])));
  const [leaf, ...issuers] = signer.certificates;
  return {
    'ib1:provenance': IB1_TRUST_FRAMEWORK,
    origins: steps.filter((step) => step.type === 'origin').map((step) => step.id),
    steps: [...data, [0, signer.serial, signedAt, base64UrlPadded(signature)]],
    certificates: {
      [signer.serial]: [certificatePem(leaf), ...issuers.map(decimalSerial)],
      ...Object.fromEntries(issuers.map((issuer) => [decimalSerial(issuer), [certificatePem(issuer)]])),
    },
  };
}

export { createDevSigningAuthority };
