import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { createIntermediateCa, createRootCa, issueClientLeaf, loadIssuer } from '../../src/pki/certificate-authority.ts';
import { initDevPki, issueDevClientCertificate, roleUrl } from '../../src/pki/dev-trust-framework.ts';
import { recordApplication } from '../../src/pki/directory-file.ts';

/** A client application's credentials as a test uses them: PEM text, ready for undici. */
export interface ClientCredentials {
  applicationUrl: string;
  cert: string;
  key: string;
}

/**
 * A fresh DATA_DIR with the dev trust framework, as `npm run cli -- pki init` makes it, and
 * helpers to issue member certificates (through the same code as `pki client`) and hostile ones.
 */
export class TestTrustFramework {
  readonly dataDir: string;
  readonly pkiDir: string;
  readonly directoryFile: string;

  private constructor(dataDir: string) {
    this.dataDir = dataDir;
    this.pkiDir = path.join(dataDir, 'pki');
    this.directoryFile = path.join(dataDir, 'directory.json');
  }

  static async create(): Promise<TestTrustFramework> {
    const tf = new TestTrustFramework(mkdtempSync(path.join(os.tmpdir(), 'perseus-test-')));
    await initDevPki(tf.pkiDir, { serverHostnames: ['localhost'] });
    return tf;
  }

  /** A member certificate valid for `years` (the dev issuer's 12 months are too short for expiry tests). */
  async longLivedMember(applicationUrl: string, roles: string[], organisation: string, years: number): Promise<ClientCredentials> {
    const issuer = await loadIssuer(readFileSync(path.join(this.pkiDir, 'client-issuer.pem'), 'utf8'), readFileSync(path.join(this.pkiDir, 'client-issuer.key.pem'), 'utf8'));
    const leaf = await issueClientLeaf(issuer, { applicationUrl, organisation, roles: roles.map(roleUrl), notAfter: new Date(Date.now() + years * 366 * 86400_000) });
    recordApplication(this.directoryFile, { url: applicationUrl, id: applicationUrl, title: organisation, organisation, roles: roles.map(roleUrl) });
    return { applicationUrl, cert: leaf.bundlePem, key: leaf.keyPem };
  }

  /** A member certificate from the trusted dev issuer whose validity has already ended. */
  async expiredMember(applicationUrl: string, roles: string[]): Promise<ClientCredentials> {
    const issuer = await loadIssuer(readFileSync(path.join(this.pkiDir, 'client-issuer.pem'), 'utf8'), readFileSync(path.join(this.pkiDir, 'client-issuer.key.pem'), 'utf8'));
    const leaf = await issueClientLeaf(issuer, { applicationUrl, organisation: 'Expired Ltd', roles: roles.map(roleUrl), notBefore: new Date(Date.now() - 400 * 86400_000), notAfter: new Date(Date.now() - 86400_000) });
    return { applicationUrl, cert: leaf.bundlePem, key: leaf.keyPem };
  }

  /** The server's TLS certificate and key (a test receiver can serve with them). */
  get serverTls(): { cert: string; key: string } {
    return { cert: readFileSync(path.join(this.pkiDir, 'server.pem'), 'utf8'), key: readFileSync(path.join(this.pkiDir, 'server.key.pem'), 'utf8') };
  }

  get clientCa(): string {
    return readFileSync(path.join(this.pkiDir, 'client-ca.pem'), 'utf8') + readFileSync(path.join(this.pkiDir, 'client-issuer.pem'), 'utf8');
  }

  /** PEM of the CA that signed the server's TLS certificate, for clients to trust. */
  get serverCa(): string {
    return readFileSync(path.join(this.pkiDir, 'server-ca.pem'), 'utf8');
  }

  /** A member certificate from the dev Client Issuer, recorded in the directory file. */
  async member(applicationUrl: string, roles: string[], organisation: string, title?: string, messageDelivery?: string): Promise<ClientCredentials> {
    const outDir = path.join(this.dataDir, 'clients', Buffer.from(applicationUrl).toString('base64url'));
    mkdirSync(outDir, { recursive: true });
    const issued = await issueDevClientCertificate(this.pkiDir, { applicationUrl, roles: roles.map(roleUrl), organisation, outDir });
    recordApplication(this.directoryFile, { url: applicationUrl, id: applicationUrl, title: title ?? organisation, organisation, roles: roles.map(roleUrl), messageDelivery });
    return { applicationUrl, cert: readFileSync(issued.bundlePath, 'utf8'), key: readFileSync(issued.keyPath, 'utf8') };
  }

  /** A certificate with the right shape from a CA the server does not trust. */
  async foreignMember(applicationUrl: string, roles: string[]): Promise<ClientCredentials> {
    const root = await createRootCa({ name: 'Some Other Client CA' });
    const issuer = await createIntermediateCa(root, { name: 'Some Other Client Issuer' });
    const leaf = await issueClientLeaf(issuer, { applicationUrl, organisation: 'Impostor Ltd', roles: roles.map(roleUrl) });
    return { applicationUrl, cert: leaf.bundlePem, key: leaf.keyPem };
  }
}
