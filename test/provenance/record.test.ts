import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIntermediateCa, createRootCa } from '../../src/pki/certificate-authority.ts';
import { type DevSigningAuthority, initDevSigning, loadDevSigner, loadDevSigningAuthority } from '../../src/provenance/dev-signing.ts';
import { base64UrlPadded, decodeBase64UrlPadded, pythonJsonDumps } from '../../src/provenance/encoding.ts';
import { ProvenanceError } from '../../src/provenance/errors.ts';
import { provenanceFor } from '../../src/provenance/perseus.ts';
import { type Container, type EncodedRecord, IB1_TRUST_FRAMEWORK, ProvenanceRecord, type Step, dataForSigning, decodeStep, parseRecord } from '../../src/provenance/record.ts';
import { type ProvenanceSigner, signerFromPem } from '../../src/provenance/signer.ts';
import { ProvenanceVerifier } from '../../src/provenance/verify.ts';
import { CAP_APP, CAP_MEMBER, EDP_APP, EDP_MEMBER, EDP_ROLE, SCHEME, type TestSigner, createDevSigningAuthority, devSigner, signRaw } from './fixtures.ts';

const DAY = 86_400_000;
const utf8 = new TextEncoder();

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof ProvenanceError) return error.code;
    throw error;
  }
  return 'ok';
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ProvenanceError) return error.code;
    throw error;
  }
  return 'ok';
}

/** Re-encodes one step string of a container, as a tamperer would. */
function rewriteStep(container: Container, index: number, change: (step: Record<string, unknown>) => Record<string, unknown>): void {
  const step = decodeStep(container[index] as string) as Record<string, unknown>;
  container[index] = base64UrlPadded(utf8.encode(pythonJsonDumps(change(step))));
}

let authority: DevSigningAuthority;
let edp: TestSigner;
let verifier: ProvenanceVerifier;

beforeAll(async () => {
  authority = await createDevSigningAuthority();
  edp = await devSigner(authority);
  verifier = new ProvenanceVerifier({ signingRootsPem: authority.root.certificatePem });
});

async function simpleRecord(signer: ProvenanceSigner = edp.signer, now?: Date): Promise<{ record: EncodedRecord; ids: string[] }> {
  const builder = new ProvenanceRecord();
  const origin = builder.addStep({ type: 'origin', scheme: SCHEME, origin: 'https://edp.example/meters' });
  const transfer = builder.addStep({ type: 'transfer', scheme: SCHEME, of: origin, to: CAP_MEMBER });
  return { record: await builder.sign(signer, { now }), ids: [origin, transfer] };
}

describe('encoding (Python json.dumps and urlsafe_b64encode)', () => {
  it('writes compact JSON with ASCII escapes and Python float repr, in insertion order', () => {
    expect(pythonJsonDumps({ b: 'é☃😀', a: [1, 1.5, 1e-5, 1.5e300, 0.0001, true, null], c: { '"': '\\\n\t\u0001\u007f' } })).toBe(
      '{"b":"\\u00e9\\u2603\\ud83d\\ude00","a":[1,1.5,1e-05,1.5e+300,0.0001,true,null],"c":{"\\"":"\\\\\\n\\t\\u0001\\u007f"}}',
    );
    expect(pythonJsonDumps({ skipped: undefined, big: 123456789012345678901234567890n, neg: -0 })).toBe('{"big":123456789012345678901234567890,"neg":0}');
  });

  it('refuses values that are not JSON', () => {
    expect(code(() => pythonJsonDumps({ x: Number.NaN }))).toBe('invalid_step');
    expect(code(() => pythonJsonDumps({ x: new Map() }))).toBe('invalid_step');
    expect(code(() => pythonJsonDumps({ x: new Date() }))).toBe('invalid_step');
    expect(code(() => pythonJsonDumps([undefined]))).toBe('invalid_step');
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(code(() => pythonJsonDumps(circular))).toBe('invalid_step');
  });

  it('uses base64url WITH padding and decodes only canonical padded text', () => {
    expect(base64UrlPadded(new Uint8Array([0xfb, 0xff]))).toBe('-_8=');
    expect(decodeBase64UrlPadded('-_8=', 'x')).toEqual(new Uint8Array([0xfb, 0xff]));
    for (const bad of ['-_8', '+/8=', '-_9=', '-_8=\n', 'a===']) expect(code(() => decodeBase64UrlPadded(bad, 'x'))).toBe('malformed');
  });

  it('joins the signed data as record.py _data_for_signing does, nested containers in % ... &', () => {
    expect(dataForSigning('TF', ['s1', ['a', [0, '1', 't1', 'sig=']], 's2'], ['0', '2', 't2'])).toBe('TF.s1.%.a.%.0.1.t1.sig=.&.&.s2.0.2.t2');
  });
});

describe('building and signing', () => {
  it('encodes steps as {id, timestamp, type, ...fields} with 20-character ids and lists origins', async () => {
    const { record, ids } = await simpleRecord();
    expect(ids.every((id) => /^[A-Za-z0-9_-]{20}$/.test(id))).toBe(true);
    const [origin] = record.steps;
    expect(Object.keys(decodeStep(origin as string))).toEqual(['id', 'timestamp', 'type', 'scheme', 'origin']);
    expect(record.origins).toEqual([ids[0]]);
    expect(Object.keys(record)).toEqual(['ib1:provenance', 'origins', 'steps', 'certificates']);
    const block = record.steps.at(-1) as [number, string, string, string];
    expect(block[0]).toBe(0);
    expect(block[1]).toMatch(/^[1-9][0-9]*$/);
    expect(block[2]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(block[3]).toMatch(/^[A-Za-z0-9_-]+={0,2}$/);
    // Self-contained: the signing certificate names its issuer's serial, which has its own entry.
    const [leafPem, issuerSerial] = record.certificates![block[1]];
    expect(leafPem).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(record.certificates![issuerSerial]).toHaveLength(1);
  });

  it('refuses steps with an id, underscore keys or no type', () => {
    const builder = new ProvenanceRecord();
    expect(code(() => builder.addStep({ type: 'origin', id: 'mine' }))).toBe('invalid_step');
    expect(code(() => builder.addStep({ type: 'origin', _signature: {} }))).toBe('invalid_step');
    expect(code(() => builder.addStep({ type: '' }))).toBe('invalid_step');
  });

  it('verifies and reports each step with its signer', async () => {
    const { record, ids } = await simpleRecord();
    const verified = verifier.verify(JSON.stringify(record));
    expect(verified.steps.map((step) => step.id)).toEqual(ids);
    expect(verified.steps[1]).toMatchObject({ type: 'transfer', of: ids[0], to: CAP_MEMBER });
    expect(verified.steps[0]._signature).toEqual({ signed: { member: EDP_MEMBER, name: 'Example Energy Ltd', application: EDP_APP, roles: [EDP_ROLE] }, includedBy: [] });
  });

  it('builds the Perseus EDP -> CAP chain with provenanceFor and verifies it', async () => {
    const cap = await devSigner(authority, { applicationUrl: CAP_APP, organisation: 'Example Carbon Ltd', member: CAP_MEMBER, roles: ['carbon-accounting-provider'] });
    const permission = { account: 'acc-1', granted: new Date(Date.now() - DAY), expires: new Date(Date.now() + 365 * DAY), licences: [`${SCHEME}/licence/energy-consumption-data/2024-12-05`] };
    const edpRecord = await provenanceFor({
      signer: edp.signer,
      permission,
      origins: [{ origin: 'https://edp.example/meters', originLicence: 'https://edp.example/licence', sourceType: `${SCHEME}/source-type/Meter` }],
      transfer: { to: CAP_MEMBER, standard: `${SCHEME}/standard/x`, licence: `${SCHEME}/licence/x`, service: 'https://edp.example/api', path: '/readings' },
    });
    const received = verifier.verify(edpRecord);
    const transferToCap = received.steps.find((step) => step.type === 'transfer' && step.to === CAP_MEMBER)!;
    const capRecord = await provenanceFor({
      signer: cap.signer,
      permission: { ...permission, account: 'acc-2' },
      input: { record: edpRecord, transfer: transferToCap.id },
      origins: [{ origin: 'https://intensity.example/api', originLicence: 'https://intensity.example/licence', sourceType: `${SCHEME}/source-type/GridCarbonIntensity` }],
      process: { process: `${SCHEME}/process/emissions-calculations/2024-12-05` },
      transfer: { to: 'https://bank.example/member', standard: `${SCHEME}/standard/y`, licence: `${SCHEME}/licence/y`, service: 'https://cap.example/api', path: '/emissions' },
    });
    const steps = verifier.verify(capRecord).steps;
    expect(steps.map((step) => step.type)).toEqual(['permission', 'origin', 'transfer', 'receipt', 'permission', 'origin', 'process', 'transfer']);
    const [, , , receipt, capPermission, intensity, processStep, finalTransfer] = steps;
    expect(receipt.transfer).toBe(transferToCap.id);
    expect(processStep).toMatchObject({ inputs: [receipt.id, intensity.id], permissions: [capPermission.id] });
    expect(finalTransfer.of).toBe(processStep.id);
    expect(steps[0]._signature.includedBy.map((signer) => signer.member)).toEqual([CAP_MEMBER]);
    expect(capRecord.origins).toEqual([...edpRecord.origins, intensity.id]);
  });

  it('verifies records without embedded certificates from a local look-up, and refuses them without one', async () => {
    const local = await devSigner(authority, { includeCertificates: false });
    const { record } = await simpleRecord(local.signer);
    expect(record.certificates).toBeUndefined();
    expect(code(() => verifier.verify(record))).toBe('unknown_certificate');
    const withLookup = new ProvenanceVerifier({
      signingRootsPem: authority.root.certificatePem,
      certificatesForSerial: (serial) => (serial === local.signer.serial ? [...local.signer.certificates] : undefined),
    });
    expect(withLookup.verify(record).steps).toHaveLength(2);
  });
});

describe('refused records', () => {
  it('a tampered step', async () => {
    const { record } = await simpleRecord();
    rewriteStep(record.steps, 1, (step) => ({ ...step, to: 'https://attacker.example/member' }));
    expect(code(() => verifier.verify(record))).toBe('bad_signature');
  });

  it('a tampered signature, signing time or trust framework', async () => {
    const { record } = await simpleRecord();
    const flipped = structuredClone(record);
    const block = flipped.steps.at(-1) as [number, string, string, string];
    const signature = decodeBase64UrlPadded(block[3], 'signature');
    signature[signature.length - 1] ^= 1;
    block[3] = base64UrlPadded(signature);
    expect(code(() => verifier.verify(flipped))).toBe('bad_signature');

    const moved = structuredClone(record);
    const movedBlock = moved.steps.at(-1) as [number, string, string, string];
    movedBlock[2] = new Date(Date.parse(movedBlock[2]) - 1000).toISOString().replace('.000Z', 'Z');
    expect(code(() => verifier.verify(moved))).toBe('bad_signature');

    expect(code(() => verifier.verify({ ...record, 'ib1:provenance': 'https://other.example/tf' }))).toBe('wrong_trust_framework');
    const otherFramework = new ProvenanceVerifier({ signingRootsPem: authority.root.certificatePem, trustFramework: 'https://other.example/tf' });
    expect(code(() => otherFramework.verify(record))).toBe('wrong_trust_framework');
  });

  it('a signature by the wrong key', async () => {
    const other = await devSigner(authority);
    // signerFromPem refuses a certificate with someone else's key outright...
    expect(code(() => signerFromPem({ certificatePem: edp.bundlePem, keyPem: other.keyPem }))).toBe('invalid_signer');
    // ...and a signer that claims edp's certificate but signs with another key is caught on verification.
    const impostor: ProvenanceSigner = { ...edp.signer, sign: other.signer.sign };
    const { record } = await simpleRecord(impostor);
    expect(code(() => verifier.verify(record))).toBe('bad_signature');
  });

  it('a signing certificate that had expired (or was not yet valid) at the signing time', async () => {
    // A Signing CA old enough that only the signing certificate's own dates matter.
    const seasoned = await createDevSigningAuthority({ notBefore: new Date(Date.now() - 365 * DAY), notAfter: new Date(Date.now() + 365 * DAY) });
    const seasonedVerifier = new ProvenanceVerifier({ signingRootsPem: seasoned.root.certificatePem });
    const expired = await devSigner(seasoned, { notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
    // Our signer refuses to sign with it at all...
    expect(await codeOf(simpleRecord(expired.signer))).toBe('invalid_signer');
    // ...and a record signed after expiry anyway (as IB1's library would) does not verify.
    const builder = new ProvenanceRecord();
    builder.addStep({ type: 'origin' });
    const late = await builder.sign(expired.signer, { checkCertificateValidity: false });
    expect(code(() => seasonedVerifier.verify(late))).toBe('certificate_not_valid');
    // A record signed while it was valid still verifies after it expired: validity is judged at signing time.
    const { record } = await simpleRecord(expired.signer, new Date(Date.now() - 10 * DAY));
    expect(seasonedVerifier.verify(record).steps).toHaveLength(2);

    const future = await devSigner(seasoned, { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 30 * DAY) });
    const early = await new ProvenanceRecord().sign(future.signer, { checkCertificateValidity: false });
    expect(code(() => seasonedVerifier.verify(early))).toBe('certificate_not_valid');
  });

  it('a signing issuer that had expired at the signing time', async () => {
    const root = await createRootCa({ name: 'Short Signing CA' });
    const issuer = await createIntermediateCa(root, { name: 'Expired Signing Issuer', notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
    const signer = await devSigner({ root, issuer }, { notBefore: new Date(Date.now() - 20 * DAY), notAfter: new Date(Date.now() + 30 * DAY) });
    const { record } = await simpleRecord(signer.signer);
    expect(code(() => new ProvenanceVerifier({ signingRootsPem: root.certificatePem }).verify(record))).toBe('certificate_not_valid');
  });

  it('a signing certificate from another CA, or a Client CA instead of the Signing CA', async () => {
    const foreign = await createDevSigningAuthority({ rootName: 'Foreign Signing CA' });
    const { record } = await simpleRecord((await devSigner(foreign)).signer);
    expect(code(() => verifier.verify(record))).toBe('untrusted_certificate');
    // The embedded issuer does not make it trusted, even when configured as a root of a different CA.
    const clientCa = await createRootCa({ name: 'Perseus Dev Client CA' });
    expect(code(() => new ProvenanceVerifier({ signingRootsPem: clientCa.certificatePem }).verify(record))).toBe('untrusted_certificate');
  });

  it('a signing time in the future', async () => {
    const { record } = await simpleRecord(edp.signer, new Date(Date.now() + 60 * 60 * 1000));
    expect(code(() => verifier.verify(record))).toBe('signed_in_future');
    expect(verifier.verify(record, { now: new Date(Date.now() + 2 * 60 * 60 * 1000) }).steps).toHaveLength(2);
  });

  it('reordered steps: swapped after signing, referring forward, repeated, or an included record signed later', async () => {
    const { record } = await simpleRecord();
    const swapped = structuredClone(record);
    [swapped.steps[0], swapped.steps[1]] = [swapped.steps[1], swapped.steps[0]];
    expect(code(() => verifier.verify(swapped))).toBe('bad_signature');

    // Validly signed, but in the wrong order: a step refers to one that only comes after it.
    const origin: Step = { id: 'origin-0000000000000', timestamp: '2025-01-01T00:00:00Z', type: 'origin' };
    const transfer: Step = { id: 'transfer-00000000000', timestamp: '2025-01-01T00:00:00Z', type: 'transfer', of: origin.id };
    const process: Step = { id: 'process-000000000000', timestamp: '2025-01-01T00:00:00Z', type: 'process', inputs: [origin.id] };
    expect(verifier.verify(await signRaw(edp.signer, [origin, transfer, process])).steps).toHaveLength(3);
    const transferFirst = await signRaw(edp.signer, [transfer, origin]);
    expect(code(() => verifier.verify(transferFirst))).toBe('step_order');
    const processFirst = await signRaw(edp.signer, [process, origin]);
    expect(code(() => verifier.verify(processFirst))).toBe('step_order');
    const repeated = await signRaw(edp.signer, [origin, origin]);
    expect(code(() => verifier.verify(repeated))).toBe('step_order');

    // The same record included twice repeats its step ids.
    const twice = new ProvenanceRecord(IB1_TRUST_FRAMEWORK, record);
    twice.addRecord(record);
    const signedTwice = await twice.sign(edp.signer);
    expect(code(() => verifier.verify(signedTwice))).toBe('step_order');

    // An included record signed after the record that includes it.
    const inner = (await simpleRecord(edp.signer, new Date(Date.now() - 60_000))).record;
    const outer = new ProvenanceRecord(IB1_TRUST_FRAMEWORK, inner);
    outer.addStep({ type: 'receipt' });
    const signedEarlier = await outer.sign(edp.signer, { now: new Date(Date.now() - 120_000) });
    expect(code(() => verifier.verify(signedEarlier))).toBe('step_order');
  });

  it('origins that do not match the origin steps, an unknown container version, malformed JSON', async () => {
    const { record } = await simpleRecord();
    expect(code(() => verifier.verify({ ...record, origins: [] }))).toBe('origins_mismatch');
    const versioned = structuredClone(record);
    (versioned.steps.at(-1) as [number, string, string, string])[0] = 1;
    expect(code(() => verifier.verify(versioned))).toBe('unsupported_version');
    expect(code(() => verifier.verify('{'))).toBe('malformed');
    expect(code(() => verifier.verify({ ...record, steps: ['abc'] }))).toBe('malformed');
    expect(code(() => parseRecord({ ...record, certificates: { 1: 'pem' } }))).toBe('malformed');
    const wrongSerial = structuredClone(record);
    (wrongSerial.steps.at(-1) as [number, string, string, string])[1] = '0042';
    expect(code(() => verifier.verify(wrongSerial))).toBe('malformed');
  });
});

describe('dev Signing CA files', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'perseus-signing-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('creates the Signing CA and the operator signing certificate once, keys owner-only, and loads a working signer', async () => {
    const operator = { applicationUrl: 'https://localhost:8443/application', organisation: 'Perseus Demo Operator', roles: ['carbon-accounting-provider'] };
    expect((await initDevSigning(dir, operator)).created).toBe(true);
    const before = readdirSync(dir).map((name) => statSync(path.join(dir, name)).mtimeMs);
    expect((await initDevSigning(dir, operator)).created).toBe(false);
    expect(readdirSync(dir).map((name) => statSync(path.join(dir, name)).mtimeMs)).toEqual(before);
    expect(statSync(path.join(dir, 'signing.key.pem')).mode & 0o777).toBe(0o600);
    const loaded = await loadDevSigningAuthority(dir);
    const { record } = await simpleRecord(loadDevSigner(dir));
    const verified = new ProvenanceVerifier({ signingRootsPem: loaded.root.certificatePem }).verify(record);
    expect(verified.steps[0]._signature.signed).toEqual({ member: 'https://localhost:8443/', name: 'Perseus Demo Operator', application: operator.applicationUrl, roles: [`${SCHEME}/role/carbon-accounting-provider`] });
  });
});
