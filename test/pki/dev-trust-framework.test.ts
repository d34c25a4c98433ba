import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientCertificateTrust, certificatesFromPemBundle } from '../../src/pki/client-certificate.ts';
import {
  type DevPkiPaths,
  PERSEUS_SCHEME,
  initDevPki,
  issueDevClientCertificate,
  roleUrl,
} from '../../src/pki/dev-trust-framework.ts';
import { CertificateError } from '../../src/pki/errors.ts';

const APP = 'https://fsp.example.com/apps/lending';
const FSP_URL = `${PERSEUS_SCHEME}/role/financial-service-provider`;

const temporaryDirectories: string[] = [];
function temporaryDirectory(): string {
  const dir = mkdtempSync(join(tmpdir(), 'perseus-pki-'));
  temporaryDirectories.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of temporaryDirectories) rmSync(dir, { recursive: true, force: true });
});

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'resolved',
    (error: unknown) => (error instanceof CertificateError ? error.code : String(error)),
  );
}

describe('roleUrl', () => {
  it('expands Perseus role labels and leaves role URLs alone', () => {
    expect(roleUrl('financial-service-provider')).toBe(FSP_URL);
    expect(roleUrl('energy-data-provider')).toBe(`${PERSEUS_SCHEME}/role/energy-data-provider`);
    expect(roleUrl('carbon-accounting-provider')).toBe(`${PERSEUS_SCHEME}/role/carbon-accounting-provider`);
    expect(roleUrl('https://registry.example.org/scheme/x/role/y')).toBe('https://registry.example.org/scheme/x/role/y');
  });

  it('throws unknown_role for an unknown label', () => {
    expect(() => roleUrl('energy-data-consumer')).toThrow(expect.objectContaining({ code: 'unknown_role' }));
  });
});

describe('initDevPki', () => {
  let dir: string;
  let paths: DevPkiPaths;

  beforeAll(async () => {
    dir = join(temporaryDirectory(), 'pki');
    const result = await initDevPki(dir, { serverHostnames: ['perseus.localtest.me'] });
    expect(result.created).toBe(true);
    paths = result.paths;
  });

  it('is idempotent: a second call creates nothing and changes nothing', async () => {
    const files = Object.entries(paths).filter(([name]) => name !== 'dir').map(([, path]) => path);
    const before = files.map((path) => readFileSync(path, 'utf8'));
    const again = await initDevPki(dir, { serverHostnames: ['other.example'] });
    expect(again).toEqual({ created: false, paths });
    expect(files.map((path) => readFileSync(path, 'utf8'))).toEqual(before);
  });

  it('writes private keys readable by the owner only', () => {
    for (const key of [paths.clientCaKey, paths.clientIssuerKey, paths.serverCaKey, paths.serverKey]) {
      expect(modeOf(key)).toBe(0o600);
      expect(readFileSync(key, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    }
  });

  it('builds a P-384 Client CA over a P-256 Client Issuer with pathLen 0', () => {
    const root = new X509Certificate(readFileSync(paths.clientCa));
    const issuer = new X509Certificate(readFileSync(paths.clientIssuer));
    expect(root.subject).toBe('CN=Perseus Dev Client CA');
    expect(root.publicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
    expect(issuer.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(issuer.ca).toBe(true);
    expect(issuer.checkIssued(root) && issuer.verify(root.publicKey)).toBe(true);
  });

  it('issues a lone server certificate for localhost, the given hostnames and loopback IPs, from its own CA', () => {
    const serverPem = readFileSync(paths.server, 'utf8');
    expect(certificatesFromPemBundle(serverPem)).toHaveLength(1);
    const server = new X509Certificate(serverPem);
    const serverCa = new X509Certificate(readFileSync(paths.serverCa));
    const clientCa = new X509Certificate(readFileSync(paths.clientCa));
    expect(server.checkIssued(serverCa) && server.verify(serverCa.publicKey)).toBe(true);
    expect(server.verify(clientCa.publicKey)).toBe(false);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkHost('perseus.localtest.me')).toBe('perseus.localtest.me');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.checkIP('::1')).toBe('::1');
    expect(server.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
  });

  it('refuses to complete or overwrite a partial PKI', async () => {
    const partial = temporaryDirectory();
    writeFileSync(join(partial, 'client-ca.pem'), 'x');
    expect(await codeOf(initDevPki(partial, { serverHostnames: [] }))).toBe('pki_incomplete');
    expect(readFileSync(join(partial, 'client-ca.pem'), 'utf8')).toBe('x');
  });

  describe('issueDevClientCertificate', () => {
    it('writes client.pem, client.key.pem (0600) and client-bundle.pem (leaf + issuer)', async () => {
      const outDir = join(temporaryDirectory(), 'client');
      const written = await issueDevClientCertificate(dir, {
        applicationUrl: APP,
        roles: ['financial-service-provider'],
        organisation: 'Example Lender Ltd',
        outDir,
      });
      expect(written).toEqual({
        certificatePath: join(outDir, 'client.pem'),
        keyPath: join(outDir, 'client.key.pem'),
        bundlePath: join(outDir, 'client-bundle.pem'),
      });
      expect(modeOf(written.keyPath)).toBe(0o600);
      const bundle = certificatesFromPemBundle(readFileSync(written.bundlePath, 'utf8'));
      expect(bundle.map((certificate) => certificate.fingerprint256)).toEqual([
        new X509Certificate(readFileSync(written.certificatePath)).fingerprint256,
        new X509Certificate(readFileSync(paths.clientIssuer)).fingerprint256,
      ]);
      expect(bundle[0].subject).toBe(`C=GB\nO=Example Lender Ltd\nCN=${APP}`);
    });

    it('issues a leaf the trust verifies with the right URL, role URLs, member and thumbprint', async () => {
      const outDir = join(temporaryDirectory(), 'client');
      const member = 'https://directory.core.trust.ib1.org/member/4242';
      const written = await issueDevClientCertificate(dir, {
        applicationUrl: APP,
        roles: ['financial-service-provider', 'https://registry.example.org/scheme/x/role/y'],
        organisation: 'Example Lender Ltd',
        member,
        outDir,
      });
      const trust = new ClientCertificateTrust({ rootsPem: readFileSync(paths.clientCa, 'utf8') });
      const presented = certificatesFromPemBundle(readFileSync(written.bundlePath, 'utf8'));
      const verdict = trust.verify(presented);
      if (!verdict.ok) throw new Error(`${verdict.code}: ${verdict.message}`);
      expect(verdict).toMatchObject({
        applicationUrl: APP,
        roles: [FSP_URL, 'https://registry.example.org/scheme/x/role/y'],
        member,
        organisation: 'Example Lender Ltd',
        thumbprintS256: createHash('sha256').update(presented[0].raw).digest('base64url'),
      });
    });

    it('derives a member URL from the application origin when none is given', async () => {
      const written = await issueDevClientCertificate(dir, {
        applicationUrl: APP,
        roles: [],
        organisation: 'Example Lender Ltd',
        outDir: join(temporaryDirectory(), 'client'),
      });
      const trust = new ClientCertificateTrust({ rootsPem: readFileSync(paths.clientCa, 'utf8') });
      const verdict = trust.verify(certificatesFromPemBundle(readFileSync(written.bundlePath, 'utf8')));
      expect(verdict.ok && verdict.member).toBe('https://fsp.example.com/');
    });

    it('rejects unknown role labels and an uninitialised PKI', async () => {
      const base = { applicationUrl: APP, organisation: 'X', outDir: join(temporaryDirectory(), 'client') };
      expect(await codeOf(issueDevClientCertificate(dir, { ...base, roles: ['lender'] }))).toBe('unknown_role');
      expect(await codeOf(issueDevClientCertificate(temporaryDirectory(), { ...base, roles: [] }))).toBe('pki_not_initialised');
      expect(existsSync(base.outDir)).toBe(false);
    });

    it('completes a real mutual-TLS handshake, after which the server verifies the peer certificate', async () => {
      const written = await issueDevClientCertificate(dir, {
        applicationUrl: APP,
        roles: ['financial-service-provider'],
        organisation: 'Example Lender Ltd',
        outDir: join(temporaryDirectory(), 'client'),
      });
      const trust = new ClientCertificateTrust({
        rootsPem: readFileSync(paths.clientCa, 'utf8'),
        intermediatesPem: readFileSync(paths.clientIssuer, 'utf8'),
      });
      const server = tls.createServer({
        cert: readFileSync(paths.server),
        key: readFileSync(paths.serverKey),
        requestCert: true,
        rejectUnauthorized: false, // the verdict is ours, not OpenSSL's
      });
      const verdict = new Promise<ReturnType<ClientCertificateTrust['verify']>>((resolve) => {
        server.on('secureConnection', (socket) => {
          socket.on('error', () => {}); // teardown races are irrelevant here
          const peer = socket.getPeerX509Certificate();
          resolve(trust.verify(peer ? [peer] : []));
          socket.end();
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as { port: number };
      try {
        const client = tls.connect({
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          ca: readFileSync(paths.serverCa),
          cert: readFileSync(written.bundlePath),
          key: readFileSync(written.keyPath),
        });
        client.resume();
        const closed = new Promise<void>((resolve, reject) => {
          client.on('error', reject);
          client.on('close', () => resolve());
        });
        const result = await verdict;
        await closed; // the server ends the connection once it has its verdict
        expect(client.authorized).toBe(true); // and the client trusted the dev server certificate
        expect(result.ok && result.applicationUrl).toBe(APP);
      } finally {
        server.close();
      }
    });
  });
});
