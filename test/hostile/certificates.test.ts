// Hostile client certificates through the real mutual-TLS listener: each is presented in a real
// TLS handshake to every machine endpoint, and each must be refused with 401 invalid_client (RFC
// 6749 JSON), never a 5xx, never a dropped connection, and the server keeps serving.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { webcrypto } from 'node:crypto';

import fc from 'fast-check';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createIntermediateCa, createRootCa, issueClientLeaf, loadIssuer, type Issuer } from '../../src/pki/certificate-authority.ts';
import { roleUrl } from '../../src/pki/dev-trust-framework.ts';
import { encodeMember, encodeRoles, IB1_MEMBER_OID, IB1_ROLES_OID } from '../../src/pki/ib1-extensions.ts';
import { x509 } from '../../src/pki/x509.ts';
import type { ClientCredentials } from '../support/trust-framework.ts';
import { BANK_REDIRECT, LICENSE_EMISSIONS, expectAlive, expectMachineAnswer, newSeed, send, startWorld, type World } from './support.ts';

const APP = 'https://directory.example/a/hostile-certificate';
const FSP = [roleUrl('financial-service-provider')];
const MACHINE_PATHS = ['/par', '/token', '/revoke', '/introspect', '/permission'];

/** PEM of a leaf and the key it was made for, presented with `chain` after it. */
async function credentialsOf(certificate: x509.X509Certificate, keys: webcrypto.CryptoKeyPair, chain: string[]): Promise<ClientCredentials> {
  const der = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    applicationUrl: APP,
    cert: [certificate.toString('pem'), ...chain].join('\n') + '\n',
    key: `${x509.PemConverter.encode(der, 'PRIVATE KEY')}\n`,
  };
}

/**
 * A leaf built field by field, for what issueClientLeaf will not make: another subject, other key
 * usages. Defaults are those of a good IB1 member certificate.
 */
async function customLeaf(issuer: Issuer, options: {
  subject?: x509.Name; keyUsage?: number; extendedKeyUsage?: string[]; extensions?: x509.Extension[]; notBefore?: Date; notAfter?: Date;
}): Promise<ClientCredentials> {
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const issuerKeyId = issuer.certificate.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: '4' + Buffer.from(crypto.getRandomValues(new Uint8Array(15))).toString('hex'),
    subject: options.subject ?? new x509.Name([{ C: [{ printableString: 'GB' }] }, { O: [{ utf8String: 'Hostile Ltd' }] }, { CN: [{ utf8String: APP }] }]),
    issuer: issuer.certificate.subjectName,
    notBefore: options.notBefore ?? new Date(Date.now() - 3600_000),
    notAfter: options.notAfter ?? new Date(Date.now() + 30 * 86400_000),
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(issuerKeyId),
      new x509.KeyUsagesExtension(options.keyUsage ?? x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(options.extendedKeyUsage ?? [x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: APP }]),
      new x509.Extension(IB1_ROLES_OID, false, encodeRoles(FSP)),
      ...(options.extensions ?? []),
    ],
  });
  return credentialsOf(certificate, keys, [issuer.certificatePem]);
}

const rolesExtension = (bytes: number[] | Uint8Array) => new x509.Extension(IB1_ROLES_OID, false, Uint8Array.from(bytes));

describe('hostile client certificates are refused with 401 invalid_client on every machine endpoint', () => {
  let world: World;
  let issuer: Issuer;
  const agents: Agent[] = [];

  beforeAll(async () => {
    world = await startWorld();
    const pki = world.tf.pkiDir;
    issuer = await loadIssuer(readFileSync(path.join(pki, 'client-issuer.pem'), 'utf8'), readFileSync(path.join(pki, 'client-issuer.key.pem'), 'utf8'));
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close().catch(() => {})));
    await world?.close();
  });

  /** Presents the certificate to every machine endpoint (a fresh TLS connection for it) and checks each answer. */
  async function expectRefused(credentials: ClientCredentials, reason?: RegExp): Promise<string[]> {
    const agent = new Agent({ connect: { ca: world.tf.serverCa, cert: credentials.cert, key: credentials.key } });
    agents.push(agent);
    const descriptions: string[] = [];
    for (const route of MACHINE_PATHS) {
      const answer = await send(agent, `${world.server.mtlsOrigin}${route}`, {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          client_id: APP, response_type: 'code', redirect_uri: BANK_REDIRECT, scope: LICENSE_EMISSIONS,
          code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256', token: 'x', grant_type: 'refresh_token', refresh_token: 'x',
        }).toString(),
      });
      expectMachineAnswer(answer, route);
      expect(answer.status, `${route}: ${answer.text}`).toBe(401);
      const body = answer.json as { error: string; error_description: string };
      expect(body.error, route).toBe('invalid_client');
      if (reason) expect(body.error_description, route).toMatch(reason);
      // The reason names the problem; it never echoes a whole hostile certificate back.
      expect(body.error_description.length, route).toBeLessThan(1024);
      descriptions.push(body.error_description);
    }
    await agent.close();
    await expectAlive(world);
    return descriptions;
  }

  it('accepts the well-formed baseline certificate (the cases below each change one thing)', async () => {
    const good = await customLeaf(issuer, {});
    const agent = new Agent({ connect: { ca: world.tf.serverCa, cert: good.cert, key: good.key } });
    agents.push(agent);
    const answer = await send(agent, `${world.server.mtlsOrigin}/par`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: APP, response_type: 'code', redirect_uri: BANK_REDIRECT, scope: LICENSE_EMISSIONS, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }).toString(),
    });
    expect(answer.status, answer.text).toBe(201);
  });

  describe('garbage in the ib1Roles extension', () => {
    const cases: Array<[string, number[]]> = [
      ['not DER at all', [0xde, 0xad, 0xbe, 0xef]],
      ['empty value', []],
      ['a role that is not a UTF8String (IA5String)', [0x30, 0x05, 0x16, 0x03, 0x61, 0x62, 0x63]],
      ['a SEQUENCE whose length runs past the value', [0x30, 0x7f, 0x0c, 0x01, 0x61]],
      ['trailing bytes after the SEQUENCE', [0x30, 0x03, 0x0c, 0x01, 0x61, 0x00]],
      ['BER indefinite length', [0x30, 0x80, 0x0c, 0x01, 0x61, 0x00, 0x00]],
      ['non-minimal length', [0x30, 0x81, 0x03, 0x0c, 0x01, 0x61]],
      ['a role that is invalid UTF-8', [0x30, 0x04, 0x0c, 0x02, 0xc3, 0x28]],
      ['an empty role', [0x30, 0x02, 0x0c, 0x00]],
      ['a length of 2^32 bytes', [0x30, 0x84, 0xff, 0xff, 0xff, 0xff]],
    ];
    for (const [name, bytes] of cases) {
      it(name, async () => {
        const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: [], omitRolesExtension: true, extraExtensions: [rolesExtension(bytes)] });
        await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem }, /could not be decoded|DER|UTF-8|empty|tag/i);
      });
    }

    it('random bytes: refused (401) unless they happen to decode as a list of roles (then 403 for the missing role), never a 5xx', async () => {
      const seed = newSeed();
      const answers = new Map<number, number>();
      await fc.assert(fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 64 }), fc.boolean(), async (bytes, sequenceTag) => {
        const value = sequenceTag && bytes.length > 0 ? Uint8Array.from([0x30, ...bytes]) : bytes;
        const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: [], omitRolesExtension: true, extraExtensions: [rolesExtension(value)] });
        const agent = new Agent({ connect: { ca: world.tf.serverCa, cert: leaf.bundlePem, key: leaf.keyPem } });
        try {
          const answer = await send(agent, `${world.server.mtlsOrigin}/par`, {
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams({ client_id: APP, response_type: 'code', redirect_uri: BANK_REDIRECT, scope: LICENSE_EMISSIONS, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }).toString(),
          });
          expectMachineAnswer(answer, `ib1Roles ${Buffer.from(value).toString('hex')}`);
          expect([401, 403], answer.text).toContain(answer.status);
          answers.set(answer.status, (answers.get(answer.status) ?? 0) + 1);
        } finally {
          await agent.close();
        }
      }), { numRuns: 40, seed, endOnFailure: true }).catch((error: unknown) => {
        console.error(`[hostile/certificates] random ib1Roles failed: replay with FC_SEED=${seed}`);
        throw error;
      });
      expect(answers.get(401) ?? 0).toBeGreaterThan(0);
      await expectAlive(world);
    });
  });

  describe('duplicated IB1 extensions', () => {
    it('two ib1Roles extensions (which would we believe?)', async () => {
      const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: FSP, extraExtensions: [rolesExtension(new Uint8Array(encodeRoles(FSP)))] });
      await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem }, /duplicated extension 1\.3\.6\.1\.4\.1\.62329\.1\.1/);
    });
    it('two ib1Roles extensions that disagree', async () => {
      const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: [], extraExtensions: [rolesExtension(new Uint8Array(encodeRoles(FSP)))] });
      await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem }, /duplicated extension/);
    });
    it('two ib1Member extensions', async () => {
      const member = (url: string) => new x509.Extension(IB1_MEMBER_OID, false, encodeMember(url));
      const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: FSP, member: 'https://directory.example/m/one', extraExtensions: [member('https://directory.example/m/two')] });
      await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem }, /duplicated extension 1\.3\.6\.1\.4\.1\.62329\.1\.3/);
    });
    it('two subjectAltName extensions, one URI each', async () => {
      const second = new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'https://directory.example/a/someone-else' }]);
      const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: FSP, extraExtensions: [second] });
      await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem });
    });
  });

  describe('subjectAltName', () => {
    it('several URI SANs', async () => {
      const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: FSP, extraUriSans: ['https://directory.example/a/other-bank'] });
      await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem }, /2 URI subjectAltNames/);
    });
    it('fifty URI SANs, one of them the client_id sent', async () => {
      const extra = Array.from({ length: 49 }, (_, i) => `https://directory.example/a/app-${i}`);
      const leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: FSP, extraUriSans: extra });
      await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem }, /50 URI subjectAltNames/);
    });
    it('an http (not https) URI SAN', async () => {
      const leaf = await issueClientLeaf(issuer, { applicationUrl: 'http://directory.example/a/plain', organisation: 'Hostile Ltd', roles: FSP });
      await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem }, /not an https URL/);
    });
  });

  describe('a huge subject', () => {
    it('many RDNs (300) from an untrusted issuer: refused, and the reason does not echo the subject', async () => {
      const root = await createRootCa({ name: 'Hostile Root' });
      const foreign = await createIntermediateCa(root, { name: 'Hostile Issuer' });
      const subject = new x509.Name(Array.from({ length: 300 }, (_, i) => ({ OU: [{ utf8String: `unit ${i} ${'z'.repeat(20)}` }] })));
      await expectRefused(await customLeaf(foreign, { subject }), /does not chain to a trusted Client CA/);
    });
    it('a 16 KiB common name from an untrusted issuer', async () => {
      const root = await createRootCa({ name: 'Hostile Root' });
      const foreign = await createIntermediateCa(root, { name: 'Hostile Issuer' });
      const subject = new x509.Name([{ CN: [{ utf8String: `https://directory.example/a/${'y'.repeat(16 * 1024)}` }] }]);
      await expectRefused(await customLeaf(foreign, { subject }), /does not chain/);
    });
    it('many RDNs (300) signed by the trusted issuer', async () => {
      const subject = new x509.Name(Array.from({ length: 300 }, (_, i) => ({ OU: [{ utf8String: `unit ${i} ${'z'.repeat(20)}` }] })));
      await expectRefused(await customLeaf(issuer, { subject }), /subject is too large \(300 RDNs/);
    });
    it('a 16 KiB common name signed by the trusted issuer', async () => {
      const subject = new x509.Name([{ C: [{ printableString: 'GB' }] }, { O: [{ utf8String: 'Hostile Ltd' }] }, { CN: [{ utf8String: `${APP}/${'y'.repeat(16 * 1024)}` }] }]);
      await expectRefused(await customLeaf(issuer, { subject }), /subject is too large/);
    });
    it('the IB1 subject shape (C, ST, O, CN with a long application URL) is still accepted', async () => {
      const url = `https://directory.example/a/${'long-application-name-'.repeat(20)}`;
      const subject = new x509.Name([{ C: [{ printableString: 'GB' }] }, { ST: [{ utf8String: 'Greater London' }] }, { O: [{ utf8String: 'A Bank With A Rather Long Registered Name plc' }] }, { CN: [{ utf8String: url }] }]);
      const good = await customLeaf(issuer, { subject });
      const agent = new Agent({ connect: { ca: world.tf.serverCa, cert: good.cert, key: good.key } });
      agents.push(agent);
      const answer = await send(agent, `${world.server.mtlsOrigin}/par`, {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: APP, response_type: 'code', redirect_uri: BANK_REDIRECT, scope: LICENSE_EMISSIONS, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }).toString(),
      });
      expect(answer.status, answer.text).toBe(201);
    });
  });

  describe('wrong key usage', () => {
    it('keyUsage without digitalSignature (keyEncipherment only)', async () => {
      await expectRefused(await customLeaf(issuer, { keyUsage: x509.KeyUsageFlags.keyEncipherment }), /digital signatures/);
    });
    it('keyUsage keyCertSign on a leaf', async () => {
      await expectRefused(await customLeaf(issuer, { keyUsage: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign }), /digital signatures/);
    });
    it('extendedKeyUsage serverAuth only', async () => {
      await expectRefused(await customLeaf(issuer, { extendedKeyUsage: [x509.ExtendedKeyUsage.serverAuth] }), /not issued for TLS client authentication/);
    });
    it('an unknown critical extension', async () => {
      await expectRefused(await customLeaf(issuer, { extensions: [new x509.Extension('1.2.3.4.5.6.7', true, Uint8Array.from([0x05, 0x00]))] }), /unsupported critical extension/);
    });
  });

  describe('validity', () => {
    it('expired yesterday', async () => {
      await expectRefused(await customLeaf(issuer, { notBefore: new Date(Date.now() - 30 * 86400_000), notAfter: new Date(Date.now() - 86400_000) }), /expired/);
    });
    it('not valid until tomorrow', async () => {
      await expectRefused(await customLeaf(issuer, { notBefore: new Date(Date.now() + 86400_000), notAfter: new Date(Date.now() + 30 * 86400_000) }), /not valid before/);
    });
  });

  describe('a forged issuer: the trusted issuer name, another key', () => {
    it('leaf signed by another key, presented with the real issuer certificate', async () => {
      const forgedKeys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
      const forged: Issuer = { ...issuer, keys: forgedKeys };
      const leaf = await issueClientLeaf(forged, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: FSP });
      await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem }, /does not chain to a trusted Client CA/);
    });
    it('leaf signed by a look-alike issuer certificate (same name, its own key), presented with it', async () => {
      const root = await createRootCa({ name: 'Hostile Root' });
      const realName = issuer.certificate.subjectName.toString();
      const lookAlike = await createIntermediateCa(root, { name: 'placeholder' });
      // Re-issue the look-alike with exactly the trusted issuer's subject name.
      const certificate = await x509.X509CertificateGenerator.create({
        serialNumber: '5' + Buffer.from(crypto.getRandomValues(new Uint8Array(15))).toString('hex'),
        subject: realName, issuer: root.certificate.subjectName,
        notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86400_000),
        publicKey: lookAlike.keys.publicKey, signingKey: root.keys.privateKey, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
        extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
          issuer.certificate.getExtension(x509.SubjectKeyIdentifierExtension)!],
      });
      const forged: Issuer = { certificate, certificatePem: certificate.toString('pem'), keyPem: lookAlike.keyPem, keys: lookAlike.keys };
      const leaf = await issueClientLeaf(forged, { applicationUrl: APP, organisation: 'Hostile Ltd', roles: FSP });
      await expectRefused({ applicationUrl: APP, cert: leaf.bundlePem, key: leaf.keyPem }, /does not chain to a trusted Client CA/);
    });
    it('a self-signed leaf with the trusted issuer as its own name', async () => {
      const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
      const certificate = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: '6' + Buffer.from(crypto.getRandomValues(new Uint8Array(15))).toString('hex'),
        name: issuer.certificate.subjectName.toString(), notBefore: new Date(Date.now() - 3600_000), notAfter: new Date(Date.now() + 86400_000),
        keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: APP }]), new x509.Extension(IB1_ROLES_OID, false, encodeRoles(FSP))],
      });
      await expectRefused(await credentialsOf(certificate, keys, []), /does not chain/);
    });
    it('a CA certificate of the trusted issuer presented as a client certificate', async () => {
      const subCa = await createIntermediateCa(issuer, { name: 'Sub CA' });
      await expectRefused({ applicationUrl: APP, cert: subCa.certificatePem + issuer.certificatePem, key: subCa.keyPem });
    });
  });
});
