import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { SmeAccounts } from '../../src/consent/sme-accounts.ts';
import { ClientCertificateTrust, certificatesFromPemBundle } from '../../src/pki/client-certificate.ts';
import { PERSEUS_SCHEME } from '../../src/pki/dev-trust-framework.ts';
import { loadOrCreateKeys } from '../../src/provider/keys.ts';
import { assertNode24, lines, runScript } from './run-node.ts';

const temporaryDirectories: string[] = [];
function temporaryDirectory(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'perseus-cli-'));
  temporaryDirectories.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of temporaryDirectories) rmSync(dir, { recursive: true, force: true });
});

const cli = (dataDir: string, ...args: string[]) => runScript('src/cli.ts', args, { DATA_DIR: dataDir });
const modeOf = (file: string) => statSync(file).mode & 0o777;

const PKI_FILES = [
  'client-ca.pem', 'client-ca.key.pem', 'client-issuer.pem', 'client-issuer.key.pem',
  'server-ca.pem', 'server-ca.key.pem', 'server.pem', 'server.key.pem',
];
const PRIVATE_KEYS = PKI_FILES.filter((file) => file.endsWith('.key.pem'));

beforeAll(() => assertNode24());

describe('cli pki init', () => {
  let dataDir: string;
  let first: Awaited<ReturnType<typeof cli>>;
  beforeAll(async () => {
    dataDir = temporaryDirectory();
    first = await cli(dataDir, 'pki', 'init');
  });

  it('exits 0 and says it created the dev trust framework in DATA_DIR/pki', async () => {
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`created the dev trust framework in ${path.join(dataDir, 'pki')}`);
  });

  it('writes every CA, issuer and server certificate and key under DATA_DIR/pki', async () => {
    for (const file of PKI_FILES) expect(existsSync(path.join(dataDir, 'pki', file)), file).toBe(true);
  });

  it('makes every private key readable by its owner only (mode 0600)', async () => {
    for (const file of PRIVATE_KEYS) expect(modeOf(path.join(dataDir, 'pki', file)).toString(8), file).toBe('600');
  });

  it('writes a server certificate for localhost issued by server-ca.pem, and CA certificates that are CAs', async () => {
    const server = new X509Certificate(readFileSync(path.join(dataDir, 'pki/server.pem')));
    const serverCa = new X509Certificate(readFileSync(path.join(dataDir, 'pki/server-ca.pem')));
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIssued(serverCa) && server.verify(serverCa.publicKey)).toBe(true);
    expect(server.checkPrivateKey(createPrivateKey(readFileSync(path.join(dataDir, 'pki/server.key.pem'))))).toBe(true);
    expect(serverCa.ca).toBe(true);
    expect(new X509Certificate(readFileSync(path.join(dataDir, 'pki/client-ca.pem'))).ca).toBe(true);
    expect(new X509Certificate(readFileSync(path.join(dataDir, 'pki/client-issuer.pem'))).ca).toBe(true);
  });

  it('is idempotent: a second run exits 0, says the framework exists and leaves every file byte for byte', async () => {
    const before = PKI_FILES.map((file) => readFileSync(path.join(dataDir, 'pki', file), 'utf8'));
    const second = await cli(dataDir, 'pki', 'init');
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('exists already');
    expect(PKI_FILES.map((file) => readFileSync(path.join(dataDir, 'pki', file), 'utf8'))).toEqual(before);
  });
});

describe('cli pki client', () => {
  const APP = 'https://directory.example/a/x';
  const FSP_ROLE = `${PERSEUS_SCHEME}/role/financial-service-provider`;
  let dataDir: string;
  let outDir: string;
  let run: Awaited<ReturnType<typeof cli>>;
  beforeAll(async () => {
    dataDir = temporaryDirectory();
    outDir = path.join(temporaryDirectory(), 'bank');
    // No `pki init` first: `pki client` makes the dev trust framework when it is missing.
    run = await cli(dataDir, 'pki', 'client', '--url', APP, '--role', 'financial-service-provider', '--name', 'X Bank',
      '--out', outDir, '--message-delivery', 'https://x.example/messages');
  });

  it('exits 0 and writes client.pem, client.key.pem (mode 0600) and client-bundle.pem to --out', async () => {
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`issued a client certificate for ${APP}`);
    for (const file of ['client.pem', 'client.key.pem', 'client-bundle.pem']) expect(existsSync(path.join(outDir, file)), file).toBe(true);
    expect(modeOf(path.join(outDir, 'client.key.pem')).toString(8)).toBe('600');
  });

  it('writes a private key that belongs to the certificate', async () => {
    const leaf = new X509Certificate(readFileSync(path.join(outDir, 'client.pem')));
    expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(path.join(outDir, 'client.key.pem'))))).toBe(true);
  });

  it('records the application with its role URL and message delivery address in DATA_DIR/directory.json', async () => {
    const directory = JSON.parse(readFileSync(path.join(dataDir, 'directory.json'), 'utf8'));
    expect(directory.applications[APP]).toEqual({
      id: APP, title: 'X Bank', organisation: 'X Bank', roles: [FSP_ROLE], messageDelivery: 'https://x.example/messages',
    });
  });

  it('issues a bundle that chains to DATA_DIR/pki/client-ca.pem with the application URL, role URL and organisation', async () => {
    const trust = new ClientCertificateTrust({ rootsPem: readFileSync(path.join(dataDir, 'pki/client-ca.pem'), 'utf8') });
    const verdict = trust.verify(certificatesFromPemBundle(readFileSync(path.join(outDir, 'client-bundle.pem'), 'utf8')));
    expect(verdict).toMatchObject({ ok: true, applicationUrl: APP, roles: [FSP_ROLE], organisation: 'X Bank', member: 'https://directory.example/' });
  });

  it('issues a leaf that chains only through the dev Client Issuer (alone it is untrusted, with client-issuer.pem it verifies)', async () => {
    const rootsPem = readFileSync(path.join(dataDir, 'pki/client-ca.pem'), 'utf8');
    const leaf = certificatesFromPemBundle(readFileSync(path.join(outDir, 'client.pem'), 'utf8'));
    expect(leaf).toHaveLength(1);
    expect(new ClientCertificateTrust({ rootsPem }).verify(leaf)).toMatchObject({ ok: false, code: 'untrusted' });
    const withIssuer = new ClientCertificateTrust({ rootsPem, intermediatesPem: readFileSync(path.join(dataDir, 'pki/client-issuer.pem'), 'utf8') });
    expect(withIssuer.verify(leaf)).toMatchObject({ ok: true, applicationUrl: APP, roles: [FSP_ROLE] });
  });

  it('issues a certificate that a different dev trust framework does not trust', async () => {
    const other = temporaryDirectory();
    expect((await cli(other, 'pki', 'init')).code).toBe(0);
    const trust = new ClientCertificateTrust({ rootsPem: readFileSync(path.join(other, 'pki/client-ca.pem'), 'utf8') });
    expect(trust.verify(certificatesFromPemBundle(readFileSync(path.join(outDir, 'client-bundle.pem'), 'utf8')))).toMatchObject({ ok: false, code: 'untrusted' });
  });

  it('refuses an unknown role label with a non-zero exit and a one-line message naming the role, issuing nothing', async () => {
    const out = path.join(temporaryDirectory(), 'typo');
    const result = await cli(dataDir, 'pki', 'client', '--url', 'https://typo.example/app', '--role', 'banker', '--name', 'Typo', '--out', out);
    expect(result.code).not.toBe(0);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toContain('"banker"');
    expect(existsSync(path.join(out, 'client.pem'))).toBe(false);
    const directory = JSON.parse(readFileSync(path.join(dataDir, 'directory.json'), 'utf8'));
    expect(Object.keys(directory.applications)).toEqual([APP]);
  });

  it('exits 2 with the usage when --out is missing', async () => {
    const result = await cli(dataDir, 'pki', 'client', '--url', 'https://y.example/app', '--role', 'financial-service-provider', '--name', 'Y');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('pki client needs --url, --role, --name and --out');
    expect(result.stderr).toContain('usage:');
  });
});

describe('cli sme add', () => {
  let dataDir: string;
  beforeAll(() => {
    dataDir = temporaryDirectory();
  });

  /** The users and meters in DATA_DIR/perseus.sqlite, read the way the server reads them. */
  async function withAccounts<T>(use: (accounts: SmeAccounts, db: ReturnType<typeof openSqliteDatabase>) => Promise<T> | T): Promise<T> {
    const keys = await loadOrCreateKeys(dataDir);
    const db = openSqliteDatabase(path.join(dataDir, 'perseus.sqlite'));
    try {
      return await use(new SmeAccounts(db, keys.accountSecret), db);
    } finally {
      db.close();
    }
  }

  it('adds a user whose password then signs in, with the meter parsed from MPAN:OUTCODE', async () => {
    const result = await cli(dataDir, 'sme', 'add', '--email', 'ops@acme.example', '--password', 'correct horse battery',
      '--organisation', 'Acme Bakery Ltd', '--meter', '1012345678901:SW1A');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe('added ops@acme.example to Acme Bakery Ltd (1 meter)');
    await withAccounts(async (accounts) => {
      const user = await accounts.authenticate('ops@acme.example', 'correct horse battery');
      expect(user).toBeDefined();
      expect((await accounts.organisation(user!.organisationId))?.name).toBe('Acme Bakery Ltd');
      expect((await accounts.meters(user!.organisationId))).toMatchObject([{ identifier: '1012345678901', fuel: 'electricity', outcode: 'SW1A' }]);
    });
  });

  it('refuses a second user with the same email (in any case) with a non-zero exit and a one-line message', async () => {
    const result = await cli(dataDir, 'sme', 'add', '--email', 'OPS@acme.example', '--password', 'another password',
      '--organisation', 'Another Org');
    expect(result.code).not.toBe(0);
    expect(lines(result.stderr)).toEqual(['error: a user with email ops@acme.example exists already']);
    await withAccounts(async (accounts, db) => {
      expect(db.prepare('SELECT COUNT(*) AS n FROM sme_user').get()).toEqual({ n: 1 });
      expect(db.prepare('SELECT COUNT(*) AS n FROM organisation WHERE name = ?').get('Another Org')).toEqual({ n: 0 });
      expect(await accounts.authenticate('ops@acme.example', 'another password')).toBeUndefined();
    });
  });

  it('refuses a bad meter spec with a one-line message that quotes it and shows the expected form, adding nobody', async () => {
    const result = await cli(dataDir, 'sme', 'add', '--email', 'new@acme.example', '--password', 'correct horse battery',
      '--organisation', 'Acme Bakery Ltd', '--meter', '12:SW1A');
    expect(result.code).not.toBe(0);
    const [message, ...more] = lines(result.stderr);
    expect(more).toEqual([]);
    expect(message).toContain('"12:SW1A"');
    expect(message).toContain('MPAN:OUTCODE');
    await withAccounts((_accounts, db) => {
      expect(db.prepare('SELECT COUNT(*) AS n FROM sme_user WHERE email = ?').get('new@acme.example')).toEqual({ n: 0 });
    });
  });

  it('exits 2 with the usage when --organisation is missing', async () => {
    const result = await cli(dataDir, 'sme', 'add', '--email', 'x@acme.example', '--password', 'correct horse battery');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('sme add needs --email, --password and --organisation');
    expect(result.stderr).toContain('usage:');
  });

  it('treats an option without its value as a usage error: exit 2, naming the option, then the usage', async () => {
    const result = await cli(dataDir, 'sme', 'add', '--email');
    expect(result.code).toBe(2);
    expect(lines(result.stderr)[0]).toContain('--email');
    expect(result.stderr).toContain('usage:');
  });
});

describe('cli usage', () => {
  it('prints the usage and exits 2 for an unknown command', async () => {
    const result = await cli(temporaryDirectory(), 'pki', 'destroy');
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('unknown command "pki destroy"');
    expect(result.stderr).toContain('usage:');
    for (const command of ['pki init', 'pki client', 'sme add']) expect(result.stderr).toContain(`npm run cli -- ${command}`);
  });

  it('prints the usage and exits 2 when no command is given', async () => {
    const result = await cli(temporaryDirectory());
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('usage:');
  });

  it('does not create DATA_DIR files for an unknown command', async () => {
    const dataDir = path.join(temporaryDirectory(), 'data');
    expect((await cli(dataDir, 'sme', 'remove')).code).toBe(2);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('reports a bad configuration on one line naming the variable, with exit 1', async () => {
    const result = await runScript('src/cli.ts', ['pki', 'init'], { DATA_DIR: temporaryDirectory(), ISSUER: 'http://x' });
    expect(result.code).toBe(1);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(/^configuration error: ISSUER: /);
  });
});
