import type { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import {
  type Issuer,
  createIntermediateCa,
  createRootCa,
  issueClientLeaf,
  issueCrl,
} from '../../src/pki/certificate-authority.ts';
import { ClientCertificateTrust, certificatesFromPemBundle } from '../../src/pki/client-certificate.ts';
import { type CrlSource, crlSourcesFromConfig, decodeCrls, normaliseSerial } from '../../src/pki/crl.ts';
import {
  type RevocationCheckOptions,
  type RevocationListsOptions,
  RevocationLists,
  withRevocationCheck,
} from '../../src/pki/revocation-list-cache.ts';
import { CrlServer } from '../support/crl-server.ts';

const APP = 'https://app.example.com/apps/energy-insights';
const FSP = 'https://registry.core.trust.ib1.org/scheme/perseus/role/financial-service-provider';
const HOUR = 60 * 60 * 1000;

let root: Issuer;
let issuer: Issuer;
let trust: ClientCertificateTrust;
let caPem: string;
let server: CrlServer;
let good: X509Certificate[];
let doomed: X509Certificate[];
/** A whole second, an hour ago: CRL times have one-second precision. */
let t0: number;
const running: RevocationLists[] = [];
let pathCounter = 0;

beforeAll(async () => {
  root = await createRootCa({ name: 'Test Client CA' });
  issuer = await createIntermediateCa(root, { name: 'Test Client Issuer' });
  trust = new ClientCertificateTrust({ rootsPem: root.certificatePem, intermediatesPem: issuer.certificatePem });
  caPem = root.certificatePem + issuer.certificatePem;
  server = await CrlServer.start();
  const leaf = async (serialNumber?: string) =>
    certificatesFromPemBundle((await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Example Bank plc', roles: [FSP], ...(serialNumber ? { serialNumber } : {}) })).bundlePem);
  good = await leaf();
  doomed = await leaf('00c0ffee0123'); // leading zeros in the request; revoked below as 'C0FFEE0123'
  t0 = Math.floor(Date.now() / 1000) * 1000 - HOUR;
});

afterEach(() => {
  for (const lists of running.splice(0)) lists.stop();
});

afterAll(async () => {
  await server.close();
});

/** A fresh path on the CRL server (tests never share one). */
function freshPath(name: string): string {
  return `/${++pathCounter}/${name}`;
}

function crlAt(from: Issuer, secondsAfterT0: number, revokedSerials: string[] = [], lifetimeMs = 2 * HOUR) {
  const thisUpdate = new Date(t0 + secondsAfterT0 * 1000);
  return issueCrl(from, { thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + lifetimeMs), revokedSerials });
}

function urlSource(pathname: string): CrlSource {
  return { kind: 'url', url: server.url(pathname), ca: server.ca };
}

function lists(sources: CrlSource[], options: Partial<RevocationListsOptions> = {}): RevocationLists {
  const created = new RevocationLists({ sources, caCertificatesPem: caPem, fetchTimeoutMs: 2_000, startTimeoutMs: 5_000, ...options });
  running.push(created);
  return created;
}

/** Both CRLs (root's for the Client Issuer, the issuer's for leaves), served and loaded. */
async function started(issuerRevoked: string[] = [], options: Partial<RevocationListsOptions> = {}) {
  const issuerPath = freshPath('issuer.crl');
  const rootPath = freshPath('root.crl');
  server.serve(issuerPath, (await crlAt(issuer, 0, issuerRevoked)).der);
  server.serve(rootPath, (await crlAt(root, 0)).pem);
  const revocation = lists([urlSource(issuerPath), urlSource(rootPath)], options);
  await revocation.start();
  return { revocation, issuerPath, rootPath };
}

function code(verdict: { ok: boolean; code?: string }): string {
  return verdict.ok ? 'ok' : (verdict as { code: string }).code;
}

describe('normaliseSerial', () => {
  it('compares hex without case or leading zeros', () => {
    expect(normaliseSerial('00C0FFEE')).toBe('c0ffee');
    expect(normaliseSerial('c0:ff:ee')).toBe('c0ffee');
    expect(normaliseSerial('0000')).toBe('0');
  });
});

describe('CRL sources from configuration', () => {
  it('reads comma-separated URLs and files and refuses other schemes with a one-line message', () => {
    const sources = crlSourcesFromConfig({ urls: 'https://a.example/x.crl, http://b.example/y.crl', files: 'crl/a.pem', cwd: '/srv' });
    expect(sources).toEqual([
      { kind: 'url', url: 'https://a.example/x.crl' },
      { kind: 'url', url: 'http://b.example/y.crl' },
      { kind: 'file', path: '/srv/crl/a.pem' },
    ]);
    expect(() => crlSourcesFromConfig({ urls: 'ftp://a.example/x.crl' })).toThrow(/^CRL_URLS: .*ftp/);
  });
});

describe('issueCrl', () => {
  it('makes a CRL that decodes from PEM and DER with its dates and serials', async () => {
    const crl = await crlAt(issuer, 5, ['0abc', 'DEF0']);
    for (const decoded of [decodeCrls(crl.der), decodeCrls(new TextEncoder().encode(crl.pem))]) {
      expect(decoded).toHaveLength(1);
      expect(decoded[0].thisUpdate.getTime()).toBe(t0 + 5000);
      expect(decoded[0].entries.map((entry) => normaliseSerial(entry.serialNumber))).toEqual(['abc', 'def0']);
    }
    expect(crl.pem).toMatch(/^-----BEGIN X509 CRL-----/);
  });
});

describe('RevocationLists with withRevocationCheck', () => {
  it('passes a good serial and refuses a serial once the updated CRL revokes it', async () => {
    const { revocation, issuerPath } = await started();
    const verifier = withRevocationCheck(trust, revocation);
    expect(code(verifier.verify(good))).toBe('ok');
    expect(code(verifier.verify(doomed))).toBe('ok');

    server.serve(issuerPath, (await crlAt(issuer, 10, ['C0FFEE0123'])).der);
    await revocation.refreshNow();
    const verdict = verifier.verify(doomed);
    expect(verdict).toMatchObject({ ok: false, code: 'revoked' });
    expect(!verdict.ok && verdict.message).toMatch(/serial c0ffee0123/);
    expect(code(verifier.verify(good))).toBe('ok');
    expect(revocation.status().map((source) => source.state)).toEqual(['ok', 'ok']);
    expect(revocation.status()[0]).toMatchObject({ revokedCount: 1, issuers: ['CN=Test Client Issuer'] });
  });

  it('passes the verdict of the wrapped verifier through when that refuses', async () => {
    const { revocation } = await started();
    const verifier = withRevocationCheck(trust, revocation);
    expect(code(verifier.verify([]))).toBe('no_certificate');
    const foreignRoot = await createRootCa({ name: 'Other CA' });
    const foreign = await issueClientLeaf(await createIntermediateCa(foreignRoot, { name: 'Other Issuer' }), { applicationUrl: APP, organisation: 'X', roles: [] });
    expect(code(verifier.verify(certificatesFromPemBundle(foreign.bundlePem)))).toBe('untrusted');
  });

  it("refuses every leaf of a Client Issuer that the root's CRL revokes", async () => {
    const { revocation, rootPath } = await started();
    const verifier = withRevocationCheck(trust, revocation);
    server.serve(rootPath, (await crlAt(root, 10, [issuer.certificate.serialNumber])).pem);
    await revocation.refreshNow();
    expect(verifier.verify(good)).toMatchObject({ ok: false, code: 'revoked', message: expect.stringContaining('CN=Test Client Issuer') });
  });

  it("requires a current CRL for the Client Issuer itself unless intermediates are 'if-listed'", async () => {
    const issuerPath = freshPath('issuer.crl');
    server.serve(issuerPath, (await crlAt(issuer, 0)).der);
    const revocation = lists([urlSource(issuerPath)]);
    await revocation.start();
    expect(revocation.uncoveredIssuers()).toEqual(['CN=Test Client CA']);
    const strict = withRevocationCheck(trust, revocation);
    expect(strict.verify(good)).toMatchObject({ ok: false, code: 'revocation_unknown', message: expect.stringContaining('CN=Test Client CA') });
    const lenient = withRevocationCheck(trust, revocation, { intermediates: 'if-listed' } satisfies RevocationCheckOptions);
    expect(code(lenient.verify(good))).toBe('ok');
  });

  it('refuses a CRL whose signature does not verify and keeps the last good one', async () => {
    const { revocation, issuerPath } = await started(['c0ffee0123']);
    const verifier = withRevocationCheck(trust, revocation);
    expect(code(verifier.verify(doomed))).toBe('revoked');

    // Same issuer name, another key: a forger's "nothing is revoked" CRL.
    const forger = await createIntermediateCa(await createRootCa({ name: 'Test Client CA' }), { name: 'Test Client Issuer' });
    server.serve(issuerPath, (await crlAt(forger, 20)).der);
    let [status] = await revocation.refreshNow();
    expect(status).toMatchObject({ state: 'stale', lastError: expect.stringMatching(/signature does not verify/) });
    expect(code(verifier.verify(doomed))).toBe('revoked');

    // The genuine CRL with one byte of its signature changed.
    const tampered = new Uint8Array((await crlAt(issuer, 30)).der);
    tampered[tampered.length - 3] ^= 0x01;
    server.serve(issuerPath, tampered);
    [status] = await revocation.refreshNow();
    expect(status.state).toBe('stale');
    expect(status.lastError).toMatch(/signature does not verify|not a DER or PEM CRL/);
    expect(code(verifier.verify(doomed))).toBe('revoked');

    // A CRL from a CA that is not configured at all.
    const stranger = await createRootCa({ name: 'Stranger CA' });
    server.serve(issuerPath, (await crlAt(stranger, 40)).der);
    [status] = await revocation.refreshNow();
    expect(status.lastError).toMatch(/CN=Stranger CA is not a configured CA certificate/);
    expect(code(verifier.verify(doomed))).toBe('revoked');
  });

  it('refuses an older CRL than the one in force (a replay that would un-revoke)', async () => {
    const issuerPath = freshPath('issuer.crl');
    const rootPath = freshPath('root.crl');
    server.serve(issuerPath, (await crlAt(issuer, 100, ['c0ffee0123'])).der);
    server.serve(rootPath, (await crlAt(root, 0)).der);
    const revocation = lists([urlSource(issuerPath), urlSource(rootPath)]);
    await revocation.start();
    server.serve(issuerPath, (await crlAt(issuer, 50)).der);
    const [status] = await revocation.refreshNow();
    expect(status).toMatchObject({ state: 'stale', lastError: expect.stringMatching(/older than the one in force/) });
    expect(code(withRevocationCheck(trust, revocation).verify(doomed))).toBe('revoked');
  });

  it('keeps the last good CRL through fetch failures until its nextUpdate, then fails closed and reports expired', async () => {
    let clock = new Date();
    const log: Array<Record<string, unknown>> = [];
    const { revocation, issuerPath, rootPath } = await started([], { now: () => clock, log: (line) => log.push(line) });
    const verifier = withRevocationCheck(trust, revocation);

    server.fail(issuerPath, 503);
    const [status] = await revocation.refreshNow();
    expect(status).toMatchObject({ state: 'stale', lastError: 'HTTP 503' });
    expect(log).toContainEqual(expect.objectContaining({ msg: 'crl fetch failed', source: server.url(issuerPath), error: 'HTTP 503' }));
    expect(code(verifier.verify(good, clock))).toBe('ok');
    expect(revocation.ready()).toBe(true);

    // Past nextUpdate (t0 + 2 h) with no newer CRL: refuse.
    clock = new Date(t0 + 2 * HOUR + 1000);
    expect(verifier.verify(good, clock)).toMatchObject({ ok: false, code: 'revocation_unknown' });
    expect(verifier.verify(good, clock)).toMatchObject({ ok: false, code: 'revocation_unknown' });
    expect(revocation.status()[0]).toMatchObject({ state: 'expired', nextUpdate: new Date(t0 + 2 * HOUR).toISOString() });
    expect(revocation.ready()).toBe(false);
    // Logged once per expired CRL (both issuers' CRLs ran out), not once per refused request.
    expect(log.filter((line) => line.msg === 'crl expired').map((line) => line.issuer).sort()).toEqual(['CN=Test Client CA', 'CN=Test Client Issuer']);

    // Fresh CRLs bring it back (the root's too: its CRL for the Client Issuer ran out as well).
    const fresh = { thisUpdate: new Date(clock.getTime() - 1000), nextUpdate: new Date(clock.getTime() + HOUR) };
    server.serve(issuerPath, (await issueCrl(issuer, fresh)).der);
    await revocation.refreshNow();
    expect(verifier.verify(good, clock)).toMatchObject({ ok: false, code: 'revocation_unknown', message: expect.stringContaining('from CN=Test Client CA') });
    server.serve(rootPath, (await issueCrl(root, fresh)).der);
    await revocation.refreshNow();
    expect(code(verifier.verify(good, clock))).toBe('ok');
    expect(revocation.status().map((source) => source.state)).toEqual(['ok', 'ok']);
  });

  it('reads DER and PEM files, including a PEM bundle holding both CRLs', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'perseus-crl-'));
    const derFile = path.join(dir, 'issuer.crl');
    const bundleFile = path.join(dir, 'bundle.pem');
    writeFileSync(derFile, (await crlAt(issuer, 0)).der);
    writeFileSync(bundleFile, `# CRLs of the test hierarchy\n${(await crlAt(root, 0)).pem}${(await crlAt(issuer, 0)).pem}`);

    const fromBundle = lists([{ kind: 'file', path: bundleFile }]);
    await fromBundle.start();
    expect(fromBundle.status()[0].issuers.sort()).toEqual(['CN=Test Client CA', 'CN=Test Client Issuer']);
    expect(code(withRevocationCheck(trust, fromBundle).verify(doomed))).toBe('ok');

    const files = lists(crlSourcesFromConfig({ files: `${derFile},${bundleFile}` }));
    await files.start();
    const verifier = withRevocationCheck(trust, files);
    expect(code(verifier.verify(doomed))).toBe('ok');
    writeFileSync(derFile, (await crlAt(issuer, 10, ['c0ffee0123'])).der);
    await files.refreshNow();
    expect(code(verifier.verify(doomed))).toBe('revoked');
    expect(code(verifier.verify(good))).toBe('ok');
  });

  it('refreshes in the background without being asked', async () => {
    const { revocation, issuerPath } = await started([], { refreshIntervalMs: 100, retryIntervalMs: 100 });
    const verifier = withRevocationCheck(trust, revocation);
    server.serve(issuerPath, (await crlAt(issuer, 10, ['c0ffee0123'])).der);
    await vi.waitFor(() => expect(code(verifier.verify(doomed))).toBe('revoked'), { timeout: 5_000, interval: 50 });
  });

  it('fails start-up within its timeout, in one line naming the source, when a source hangs', async () => {
    const hanging = freshPath('hang.crl');
    const okPath = freshPath('issuer.crl');
    server.serve(okPath, (await crlAt(issuer, 0)).der);
    server.hang(hanging);
    const revocation = lists([urlSource(okPath), urlSource(hanging)], { startTimeoutMs: 1_500, fetchTimeoutMs: 400 });
    const started = performance.now();
    const error = await revocation.start().then(() => undefined, (e: Error) => e);
    expect(performance.now() - started).toBeLessThan(4_000);
    expect(error?.message).toMatch(new RegExp(`^CRL source ${server.url(hanging).replaceAll('.', '\\.')} could not be loaded within 1\\.5 s: no answer within \\d+ ms$`));
    expect(server.hits(hanging)).toBeGreaterThanOrEqual(2); // retried until the deadline
  });

  it('fails start-up when nothing listens at the source', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const url = `https://127.0.0.1:${port}/issuer.crl`;
    const revocation = lists([{ kind: 'url', url }], { startTimeoutMs: 1_000 });
    const started = performance.now();
    const error = await revocation.start().then(() => undefined, (e: Error) => e);
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(error?.message).toMatch(new RegExp(`^CRL source ${url.replaceAll('.', '\\.')} could not be loaded within 1 s: connect ECONNREFUSED`));
    expect(error?.message).not.toContain('\n');
    expect(revocation.status()[0]).toMatchObject({ state: 'never_loaded', lastError: expect.stringContaining('ECONNREFUSED') });
  });

  it('fails start-up on a missing file', async () => {
    const revocation = lists([{ kind: 'file', path: '/nonexistent/perseus.crl' }], { startTimeoutMs: 300 });
    await expect(revocation.start()).rejects.toThrow(/^CRL source \/nonexistent\/perseus\.crl could not be loaded within 0\.3 s: cannot read: ENOENT/);
  });
});
