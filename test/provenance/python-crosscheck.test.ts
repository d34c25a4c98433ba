// Cross-checks against IB1's reference Python libraries (ib1-provenance, ib1-directory), run in the
// venv of scripts/python-crosscheck/setup.sh. Missing venv: these tests fail saying how to make it,
// unless PERSEUS_SKIP_PYTHON=1.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientCertificateTrust, certificatesFromPemBundle } from '../../src/pki/client-certificate.ts';
import { SigningCertificateTrust } from '../../src/provenance/certificates.ts';
import type { DevSigningAuthority } from '../../src/provenance/dev-signing.ts';
import { type JsonValue, base64UrlPadded, pythonJsonDumps } from '../../src/provenance/encoding.ts';
import { provenanceFor } from '../../src/provenance/perseus.ts';
import { type EncodedRecord, IB1_TRUST_FRAMEWORK, ProvenanceRecord, decodeStep } from '../../src/provenance/record.ts';
import { signerFromPem } from '../../src/provenance/signer.ts';
import { ProvenanceVerifier, type VerifiedStep } from '../../src/provenance/verify.ts';
import { BANK_MEMBER, CAP_APP, CAP_MEMBER, CAP_ROLE, EDP_MEMBER, EDP_ROLE, SCHEME, type TestSigner, createDevSigningAuthority, devSigner, signRaw } from './fixtures.ts';
import { SKIP_PYTHON, requirePythonVenv, runIb1, runIb1Ok } from './python.ts';

interface SignAnswer {
  record: EncodedRecord;
  ids: string[];
}
interface VerifyAnswer {
  steps: VerifiedStep[];
}
interface DirectoryCerts {
  via: 'cli' | 'library';
  caPem: string;
  issuerPem: string;
  certPem: string;
  keyPem: string;
  bundlePem: string;
}

// Values whose JSON differs between naive serialisers and Python's json.dumps defaults.
const AWKWARD = {
  text: 'Café “quotes” \\ / \u007f \u0000 \t ☃ 😀',
  numbers: [0, -1, 1.5, 0.1, 0.0001, 1e-5, 1e16, 1e21, 1.5e300, 5e-324, 1.7976931348623157e308, 123456789012345.6, 2.5e-7, -0.25, 9007199254740991],
  nested: { flag: true, nothing: null, list: [] as JsonValue[], empty: {} },
};

describe.skipIf(SKIP_PYTHON)("IB1's reference Python libraries", () => {
  let authority: DevSigningAuthority;
  let edp: TestSigner;
  let cap: TestSigner;
  let verifier: ProvenanceVerifier;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'perseus-ib1-'));

  beforeAll(async () => {
    requirePythonVenv();
    authority = await createDevSigningAuthority();
    edp = await devSigner(authority);
    cap = await devSigner(authority, { applicationUrl: CAP_APP, organisation: 'Example Carbon Ltd', member: CAP_MEMBER, roles: ['carbon-accounting-provider'] });
    verifier = new ProvenanceVerifier({ signingRootsPem: authority.root.certificatePem });
  });

  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const ib1Verify = (record: EncodedRecord, rootPem = authority.root.certificatePem) =>
    runIb1<VerifyAnswer>('verify', { trustFramework: IB1_TRUST_FRAMEWORK, rootPem, record });

  async function edpRecord(): Promise<EncodedRecord> {
    return provenanceFor({
      signer: edp.signer,
      permission: { account: 'acc-Zürich-1', granted: new Date(Date.now() - 86_400_000), expires: new Date(Date.now() + 86_400_000 * 365), licences: [`${SCHEME}/licence/energy-consumption-data/2024-12-05`] },
      origins: [
        {
          origin: 'https://edp.example/meters',
          originLicence: 'https://edp.example/licence',
          sourceType: `${SCHEME}/source-type/Meter`,
          scheme: { meteringPeriod: { from: '2025-01-01Z', to: '2025-02-01Z' }, awkward: AWKWARD },
          assurance: { dataSource: `${SCHEME}/assurance/data-source/SmartMeter` },
        },
      ],
      transfer: {
        to: CAP_MEMBER,
        standard: `${SCHEME}/standard/energy-consumption-data/2024-12-05`,
        licence: `${SCHEME}/licence/energy-consumption-data/2024-12-05`,
        service: 'https://edp.example/api/v1',
        path: '/readings',
        parameters: { measure: 'import', from: '2025-01-01Z', to: '2025-02-01Z' },
        transaction: 'f9d3a1a4-7c52-4d2f-9a58-3f1d2b8f4e10',
      },
    });
  }

  it('(1) verifies a record this project signs, decoding the same steps and signer', async () => {
    const record = await edpRecord();
    const ours = verifier.verify(record);
    const theirs = runIb1Ok<VerifyAnswer>('verify', { trustFramework: IB1_TRUST_FRAMEWORK, rootPem: authority.root.certificatePem, record });
    expect(theirs.steps).toEqual(ours.steps);
    expect(theirs.steps.map((step) => step.type)).toEqual(['permission', 'origin', 'transfer']);
    expect(theirs.steps[0]._signature.signed).toEqual({ member: EDP_MEMBER, name: 'Example Energy Ltd', application: ours.steps[0]._signature.signed.application, roles: [EDP_ROLE] });
    expect(theirs.steps[1]['perseus:scheme']).toEqual({ meteringPeriod: { from: '2025-01-01Z', to: '2025-02-01Z' }, awkward: AWKWARD });
  });

  it('(1) refuses, like this project, a record whose step was altered after signing', async () => {
    const record = await edpRecord();
    const steps = record.steps as string[];
    const transfer = decodeStep(steps[2]);
    steps[2] = base64UrlPadded(new TextEncoder().encode(pythonJsonDumps({ ...transfer, to: BANK_MEMBER })));
    const answer = ib1Verify(record);
    expect(answer.ok).toBe(false);
    expect(() => verifier.verify(record)).toThrow(expect.objectContaining({ code: 'bad_signature' }));
  });

  it('(1) IB1 refuses the records we refuse for a wrong key or a certificate expired at signing time', async () => {
    const DAY = 86_400_000;
    const other = await devSigner(authority);
    const wrongKey = await new ProvenanceRecord().sign({ ...edp.signer, sign: other.signer.sign });
    const seasoned = await createDevSigningAuthority({ notBefore: new Date(Date.now() - 365 * DAY) });
    const expired = await devSigner(seasoned, { notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
    const late = await new ProvenanceRecord().sign(expired.signer, { checkCertificateValidity: false });
    const ok = await new ProvenanceRecord().sign(expired.signer, { now: new Date(Date.now() - 10 * DAY) });
    expect(ib1Verify(wrongKey)).toMatchObject({ ok: false, error: expect.stringContaining('InvalidSignature') });
    expect(ib1Verify(late, seasoned.root.certificatePem)).toMatchObject({ ok: false, error: expect.stringContaining('not valid at validation time') });
    expect(ib1Verify(ok, seasoned.root.certificatePem)).toMatchObject({ ok: true });
  });

  it('(1) where we are stricter: IB1 accepts a step referring to a later step, which we refuse', async () => {
    const origin = { id: 'origin-0000000000000', timestamp: '2025-01-01T00:00:00Z', type: 'origin' };
    const transfer = { id: 'transfer-00000000000', timestamp: '2025-01-01T00:00:00Z', type: 'transfer', of: origin.id };
    const backwards = await signRaw(edp.signer, [transfer, origin]);
    expect(ib1Verify(backwards)).toMatchObject({ ok: true });
    expect(() => verifier.verify(backwards)).toThrow(expect.objectContaining({ code: 'step_order' }));
  });

  it('(1)+(2) IB1 builds on our record (verify, receipt, process, transfer, sign) and we verify the nested result', async () => {
    const received = await edpRecord();
    const transferId = verifier.verify(received).steps.find((step) => step.type === 'transfer')!.id;
    const { record } = runIb1Ok<SignAnswer>('sign', {
      trustFramework: IB1_TRUST_FRAMEWORK,
      rootPem: authority.root.certificatePem,
      certificatesPem: cap.bundlePem,
      keyPem: cap.keyPem,
      include: received,
      steps: [
        { type: 'receipt', transfer: transferId },
        { type: 'process', scheme: SCHEME, inputs: [], process: `${SCHEME}/process/emissions-calculations/2024-12-05` },
      ],
    });
    const verified = verifier.verify(record);
    expect(verified.steps.map((step) => step.type)).toEqual(['permission', 'origin', 'transfer', 'receipt', 'process']);
    expect(verified.steps[0]._signature.includedBy.map((signer) => signer.member)).toEqual([CAP_MEMBER]);
    expect(verified.steps[3]._signature).toEqual({ signed: expect.objectContaining({ member: CAP_MEMBER, roles: [CAP_ROLE] }), includedBy: [] });
    expect(Object.keys(record.certificates!)).toHaveLength(3); // both signing certificates and their shared issuer
  });

  it('(2) verifies records IB1 signs, and encodes their steps to the same bytes', async () => {
    const steps = [
      { type: 'origin', scheme: SCHEME, sourceType: `${SCHEME}/source-type/Meter`, external: true, awkward: AWKWARD },
      { type: 'permission', timestamp: '2025-03-16T09:30:00Z', account: 'ü', allows: { licences: ['https://x.example/ł'] } },
    ];
    const { record, ids } = runIb1Ok<SignAnswer>('sign', {
      trustFramework: IB1_TRUST_FRAMEWORK,
      rootPem: authority.root.certificatePem,
      certificatesPem: edp.bundlePem,
      keyPem: edp.keyPem,
      steps,
    });
    const verified = verifier.verify(record);
    expect(verified.steps.map((step) => step.id)).toEqual(ids);
    expect(verified.origins).toEqual([ids[0]]);
    expect(verified.steps[0].awkward).toEqual(AWKWARD);
    // Byte compatibility: our encoder turns IB1's decoded steps back into IB1's exact strings.
    const encodedByIb1 = (record.steps as unknown[]).filter((entry): entry is string => typeof entry === 'string');
    expect(encodedByIb1.map((encoded) => base64UrlPadded(new TextEncoder().encode(pythonJsonDumps(decodeStep(encoded)))))).toEqual(encodedByIb1);
    // ...and the certificates section is what our signer would embed.
    const ours = await new ProvenanceRecord().sign(edp.signer);
    expect(ours.certificates).toEqual(record.certificates);
  });

  it('(2) IB1 verifies a record we build on top of one IB1 signed', async () => {
    const { record: received, ids } = runIb1Ok<SignAnswer>('sign', {
      trustFramework: IB1_TRUST_FRAMEWORK,
      rootPem: authority.root.certificatePem,
      certificatesPem: edp.bundlePem,
      keyPem: edp.keyPem,
      steps: [{ type: 'origin', scheme: SCHEME }, { type: 'transfer', scheme: SCHEME, to: CAP_MEMBER }],
    });
    verifier.verify(received);
    const record = new ProvenanceRecord(IB1_TRUST_FRAMEWORK, received);
    const receipt = record.addStep({ type: 'receipt', transfer: ids[1] });
    record.addStep({ type: 'process', scheme: SCHEME, inputs: [receipt], process: `${SCHEME}/process/emissions-calculations/2024-12-05` });
    const signed = await record.sign(cap.signer);
    const theirs = runIb1Ok<VerifyAnswer>('verify', { trustFramework: IB1_TRUST_FRAMEWORK, rootPem: authority.root.certificatePem, record: signed });
    expect(theirs.steps).toEqual(verifier.verify(signed).steps);
    expect(theirs.steps.map((step) => step._signature.includedBy.length)).toEqual([1, 1, 0, 0]);
  });

  describe('ib1-directory certificates', () => {
    const IB1_APP = 'https://directory.example.org/application/cap-1';
    let signing: DirectoryCerts;
    let client: DirectoryCerts;

    beforeAll(() => {
      // At most 64 characters: ib1-directory puts the application URL in the CN too (X.520 ub-common-name).
      const request = { applicationUri: IB1_APP, memberUri: CAP_MEMBER, organisation: 'Example Carbon Ltd', roles: [CAP_ROLE] };
      signing = runIb1Ok<DirectoryCerts>('directory-certs', { ...request, dir: path.join(tmp, 'signing'), usage: 'signing' });
      client = runIb1Ok<DirectoryCerts>('directory-certs', { ...request, dir: path.join(tmp, 'client'), usage: 'client' });
    });

    it('made them locally, with its command-line tool when the venv Python can import it', () => {
      expect(['cli', 'library']).toContain(signing.via);
      expect(new X509Certificate(signing.certPem).subject).toContain('O=Example Carbon Ltd');
    });

    it('(2) records signed with an ib1-directory signing certificate verify here against its Signing CA', () => {
      const { record } = runIb1Ok<SignAnswer>('sign', {
        trustFramework: IB1_TRUST_FRAMEWORK,
        rootPem: signing.caPem,
        certificatesPem: signing.bundlePem,
        keyPem: signing.keyPem,
        steps: [{ type: 'origin', scheme: SCHEME }],
      });
      const verified = new ProvenanceVerifier({ signingRootsPem: signing.caPem }).verify(record);
      expect(verified.steps[0]._signature.signed).toEqual({ member: CAP_MEMBER, name: 'Example Carbon Ltd', application: IB1_APP, roles: [CAP_ROLE] });
      // ...and not against our dev Signing CA.
      expect(() => verifier.verify(record)).toThrow(expect.objectContaining({ code: 'untrusted_certificate' }));
    });

    it('(1) records we sign with an ib1-directory signing certificate (SEC1 key) verify in IB1', async () => {
      const signer = signerFromPem({ certificatePem: signing.bundlePem, keyPem: signing.keyPem });
      const record = new ProvenanceRecord();
      record.addStep({ type: 'origin', scheme: SCHEME, note: AWKWARD.text });
      const signed = await record.sign(signer);
      const theirs = runIb1Ok<VerifyAnswer>('verify', { trustFramework: IB1_TRUST_FRAMEWORK, rootPem: signing.caPem, record: signed });
      expect(theirs.steps[0].note).toBe(AWKWARD.text);
    });

    it('(3) ClientCertificateTrust accepts an ib1-directory client certificate with its CA configured', () => {
      const trust = new ClientCertificateTrust({ rootsPem: client.caPem, intermediatesPem: client.issuerPem });
      const verdict = trust.verify(certificatesFromPemBundle(client.bundlePem));
      // ib1-directory 0.9.2 (certificates.py sign_csr) issues client certificates WITHOUT an
      // extendedKeyUsage, which RFC 5280 reads as "any purpose": they are accepted.
      expect(verdict).toMatchObject({ ok: true });
    });

    it('(3) the ib1-directory client certificate is otherwise acceptable: chain, dates, URI SAN, O, roles, member', () => {
      const presented = certificatesFromPemBundle(client.bundlePem);
      expect(presented[0].keyUsage).toBeUndefined(); // node's name for extendedKeyUsage: absent
      // The provenance chain checker applies the same chain rules without requiring clientAuth.
      const { signer, chain } = new SigningCertificateTrust({ rootsPem: client.caPem }).verify(presented, new Date());
      expect(chain).toHaveLength(3);
      expect(signer).toEqual({ member: CAP_MEMBER, name: 'Example Carbon Ltd', application: IB1_APP, roles: [CAP_ROLE] });
    });
  });
});
