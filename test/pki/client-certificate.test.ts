import { X509Certificate, createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type Issuer,
  createIntermediateCa,
  createRootCa,
  issueClientLeaf,
  issueServerLeaf,
} from '../../src/pki/certificate-authority.ts';
import { ClientCertificateTrust, certificatesFromPemBundle } from '../../src/pki/client-certificate.ts';
import { CertificateError } from '../../src/pki/errors.ts';
import { IB1_ROLES_OID, encodeRoles } from '../../src/pki/ib1-extensions.ts';
import { x509 } from '../../src/pki/x509.ts';

const APP = 'https://app.example.com/apps/energy-insights';
const FSP = 'https://registry.core.trust.ib1.org/scheme/perseus/role/financial-service-provider';
const EDP = 'https://registry.core.trust.ib1.org/scheme/perseus/role/energy-data-provider';
const MEMBER = 'https://directory.core.trust.ib1.org/member/81524';
const DAY = 24 * 60 * 60 * 1000;

let root: Issuer;
let issuer: Issuer;
let trust: ClientCertificateTrust;

beforeAll(async () => {
  root = await createRootCa({ name: 'Test Client CA' });
  issuer = await createIntermediateCa(root, { name: 'Test Client Issuer' });
  trust = new ClientCertificateTrust({ rootsPem: root.certificatePem });
});

async function leafBundle(options: Partial<Parameters<typeof issueClientLeaf>[1]> = {}, from: Issuer = issuer) {
  const leaf = await issueClientLeaf(from, { applicationUrl: APP, organisation: 'Example Bank plc', roles: [FSP], ...options });
  return certificatesFromPemBundle(leaf.bundlePem);
}

function failureCode(verdict: ReturnType<ClientCertificateTrust['verify']>): string {
  return verdict.ok ? 'ok' : verdict.code;
}

describe('ClientCertificateTrust', () => {
  it('accepts a leaf presented with its issuer and reports URL, roles, member, organisation and x5t#S256', async () => {
    const presented = await leafBundle({ roles: [FSP, EDP], member: MEMBER, organisation: 'Example, "Bank" plc' });
    const verdict = trust.verify(presented);
    if (!verdict.ok) throw new Error(verdict.message);
    expect(verdict.applicationUrl).toBe(APP);
    expect(verdict.roles).toEqual([FSP, EDP]);
    expect(verdict.member).toBe(MEMBER);
    expect(verdict.organisation).toBe('Example, "Bank" plc');
    expect(verdict.thumbprintS256).toBe(createHash('sha256').update(presented[0].raw).digest('base64url'));
    expect(verdict.leaf).toBe(presented[0]);
  });

  it('reads the URI SAN from the DER, so URLs that node quotes in subjectAltName survive intact', async () => {
    const url = 'https://app.example.com/a,b/"c"';
    const presented = await leafBundle({ applicationUrl: url });
    expect(presented[0].subjectAltName).toContain('\\u002c'); // node's escaped rendering
    const verdict = trust.verify(presented);
    expect(verdict.ok && verdict.applicationUrl).toBe(url);
  });

  it('gives roles [] and no member when the extensions are absent', async () => {
    const verdict = trust.verify(await leafBundle({ omitRolesExtension: true }));
    expect(verdict.ok).toBe(true);
    expect(verdict.ok && verdict.roles).toEqual([]);
    expect(verdict.ok && verdict.member).toBeUndefined();
  });

  it('refuses a leaf from another CA as untrusted', async () => {
    const otherRoot = await createRootCa({ name: 'Other CA' });
    const otherIssuer = await createIntermediateCa(otherRoot, { name: 'Other Issuer' });
    expect(failureCode(trust.verify(await leafBundle({}, otherIssuer)))).toBe('untrusted');
  });

  it('refuses a forged issuer with the right name but another key, whether or not the forger sends it', async () => {
    // Same names as the real hierarchy, different keys.
    const fakeRoot = await createRootCa({ name: 'Test Client CA' });
    const fakeIssuer = await createIntermediateCa(fakeRoot, { name: 'Test Client Issuer' });
    const knowsIssuer = new ClientCertificateTrust({ rootsPem: root.certificatePem, intermediatesPem: issuer.certificatePem });
    const forged = await leafBundle({}, fakeIssuer);
    expect(failureCode(trust.verify(forged))).toBe('untrusted');
    expect(failureCode(knowsIssuer.verify([forged[0]]))).toBe('untrusted');

    // Even issuer name *and* authority key identifier copied from the real issuer: only the signature differs.
    const impostor: Issuer = { ...issuer, keys: fakeIssuer.keys };
    const [leaf] = await leafBundle({}, impostor);
    const realIssuer = new X509Certificate(issuer.certificatePem);
    expect(leaf.issuer).toBe(realIssuer.subject);
    expect(failureCode(trust.verify([leaf, realIssuer]))).toBe('untrusted');
    expect(failureCode(knowsIssuer.verify([leaf]))).toBe('untrusted');
  });

  it('verifies a leaf sent without its issuer only when the trust knows the intermediate', async () => {
    const [leaf] = await leafBundle();
    expect(failureCode(trust.verify([leaf]))).toBe('untrusted');
    const knowsIssuer = new ClientCertificateTrust({
      rootsPem: root.certificatePem,
      intermediatesPem: issuer.certificatePem,
    });
    expect(failureCode(knowsIssuer.verify([leaf]))).toBe('ok');
  });

  it('refuses expired and not-yet-valid leaves', async () => {
    const expired = await leafBundle({ notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - DAY) });
    expect(failureCode(trust.verify(expired))).toBe('expired');
    const future = await leafBundle({ notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 400 * DAY) });
    expect(failureCode(trust.verify(future))).toBe('not_yet_valid');
  });

  it('re-checks validity against `now` on every call even though the verdict is cached', async () => {
    const presented = await leafBundle();
    expect(failureCode(trust.verify(presented))).toBe('ok');
    expect(failureCode(trust.verify(presented, new Date(Date.now() + 2 * 366 * DAY)))).toBe('expired');
    expect(failureCode(trust.verify(presented, new Date(Date.now() - DAY)))).toBe('not_yet_valid');
    expect(failureCode(trust.verify(presented))).toBe('ok');
  });

  it('refuses a chain whose intermediate has expired', async () => {
    const oldIssuer = await createIntermediateCa(root, {
      name: 'Old Issuer',
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const presented = await leafBundle({ notBefore: new Date(Date.now() - 5 * DAY) }, oldIssuer);
    expect(failureCode(trust.verify(presented))).toBe('expired');
  });

  it('refuses two URI SANs, and a non-https URI SAN', async () => {
    expect(failureCode(trust.verify(await leafBundle({ extraUriSans: ['https://other.example.com/'] })))).toBe('multiple_uri_san');
    expect(failureCode(trust.verify(await leafBundle({ applicationUrl: 'http://app.example.com/' })))).toBe('no_uri_san');
  });

  it('refuses a garbage or duplicated ib1Roles extension as bad_extension', async () => {
    const garbage = new x509.Extension(IB1_ROLES_OID, false, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    const garbageVerdict = trust.verify(await leafBundle({ omitRolesExtension: true, extraExtensions: [garbage] }));
    expect(failureCode(garbageVerdict)).toBe('bad_extension');
    const second = new x509.Extension(IB1_ROLES_OID, false, encodeRoles([EDP]));
    expect(failureCode(trust.verify(await leafBundle({ extraExtensions: [second] })))).toBe('bad_extension');
  });

  it('refuses an unknown critical extension', async () => {
    const critical = new x509.Extension('1.3.6.1.4.1.62329.9.9', true, new Uint8Array([0x05, 0x00]));
    expect(failureCode(trust.verify(await leafBundle({ extraExtensions: [critical] })))).toBe('bad_extension');
  });

  it('refuses a CA certificate and a server certificate presented as client certificates', async () => {
    const intermediate = certificatesFromPemBundle(issuer.certificatePem);
    expect(failureCode(trust.verify(intermediate))).toBe('ca_certificate');
    const server = await issueServerLeaf(issuer, { dnsNames: ['app.example.com'] });
    expect(failureCode(trust.verify(certificatesFromPemBundle(server.bundlePem)))).toBe('not_client_auth');
  });

  it('enforces the issuer pathLen 0: a sub-CA below the Client Issuer cannot issue client certificates', async () => {
    const subCa = await createIntermediateCa(issuer, { name: 'Rogue Sub-CA' });
    const presented = await leafBundle({}, subCa);
    expect(failureCode(trust.verify([...presented, new X509Certificate(issuer.certificatePem)]))).toBe('untrusted');
  });

  it('reports no_certificate for an empty presentation', () => {
    expect(failureCode(trust.verify([]))).toBe('no_certificate');
  });

  it('keeps the verdict cache bounded', async () => {
    const small = new ClientCertificateTrust({ rootsPem: root.certificatePem, cacheSize: 2 });
    const bundles = await Promise.all([leafBundle(), leafBundle(), leafBundle()]);
    for (const bundle of [...bundles, ...bundles]) expect(failureCode(small.verify(bundle))).toBe('ok');
  });

  it('refuses to be configured without a root or with a non-CA certificate', async () => {
    expect(() => new ClientCertificateTrust({ rootsPem: '' })).toThrow(CertificateError);
    const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'X', roles: [] });
    expect(() => new ClientCertificateTrust({ rootsPem: leaf.certificatePem })).toThrow(CertificateError);
  });
});

describe('certificatesFromPemBundle', () => {
  it('splits a bundle into its certificates, ignoring text between blocks', async () => {
    const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'X', roles: [] });
    const certificates = certificatesFromPemBundle(`# leaf\n${leaf.certificatePem}\n# issuer\n${issuer.certificatePem}`);
    expect(certificates.map((certificate) => certificate.subject.split('\n').at(-1))).toEqual([
      `CN=${APP}`,
      'CN=Test Client Issuer',
    ]);
    expect(certificatesFromPemBundle('')).toEqual([]);
  });
});
