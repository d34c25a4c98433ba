import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Agent, fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { freePort } from '../support/server.ts';
import { assertNode24, lines, runScript, spawnScript } from './run-node.ts';

const temporaryDirectories: string[] = [];
function temporaryDirectory(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'perseus-start-'));
  temporaryDirectories.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of temporaryDirectories) rmSync(dir, { recursive: true, force: true });
});

beforeAll(() => assertNode24());

describe('npm start with a bad configuration', () => {
  it('exits 1 within a few seconds with exactly one stderr line naming ISSUER, and creates nothing', async () => {
    const dataDir = path.join(temporaryDirectory(), 'data');
    const started = Date.now();
    const result = await runScript('src/main.ts', [], { DATA_DIR: dataDir, ISSUER: 'http://x' }, 5_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result.code).toBe(1);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(/^configuration error: ISSUER: .*"http:\/\/x"/);
    expect(result.stdout).toBe('');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('exits 1 with one stderr line naming MTLS_ORIGIN when it equals ISSUER', async () => {
    const result = await runScript('src/main.ts', [], { DATA_DIR: temporaryDirectory(), ISSUER: 'https://localhost:9443', MTLS_ORIGIN: 'https://localhost:9443' }, 5_000);
    expect(result.code).toBe(1);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(/^configuration error: MTLS_ORIGIN: /);
  });

  it('exits 1 with one stderr line naming TLS_CERT_FILE when a configured certificate file is missing', async () => {
    const dataDir = temporaryDirectory();
    const result = await runScript('src/main.ts', [], {
      DATA_DIR: dataDir, TLS_CERT_FILE: path.join(dataDir, 'nowhere.pem'), ISSUER: `https://localhost:${await freePort()}`, MTLS_ORIGIN: `https://localhost:${await freePort()}`,
    }, 10_000);
    expect(result.code).toBe(1);
    expect(lines(result.stderr)).toHaveLength(1);
    expect(result.stderr).toMatch(/^cannot start: TLS_CERT_FILE: /);
    // A custom certificate is the operator's: no dev trust framework is made in its place.
    expect(existsSync(path.join(dataDir, 'pki'))).toBe(false);
  });
});

describe('npm start on a fresh DATA_DIR', () => {
  let child: ChildProcess | undefined;
  let dataDir: string;
  let issuer: string;
  let mtlsOrigin: string;
  let stdout = '';
  let stderr = '';
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  beforeAll(async () => {
    dataDir = path.join(temporaryDirectory(), 'data');
    const [publicPort, mtlsPort] = [await freePort(), await freePort()];
    issuer = `https://localhost:${publicPort}`;
    mtlsOrigin = `https://localhost:${mtlsPort}`;
    const started = spawnScript('src/main.ts', [], { DATA_DIR: dataDir, ISSUER: issuer, MTLS_ORIGIN: mtlsOrigin });
    child = started;
    exited = new Promise((resolve) => started.once('exit', (code, signal) => resolve({ code, signal })));
    started.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start-up line within 30 s\nstdout: ${stdout}\nstderr: ${stderr}`)), 30_000);
      started.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        if (stdout.includes('Perseus authorization server')) { clearTimeout(timer); resolve(); }
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`the server exited (${code ?? signal}) before starting\nstdout: ${stdout}\nstderr: ${stderr}`));
      });
    });
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });

  it('announces the issuer, the mTLS origin and their ports on stdout', () => {
    const announcement = lines(stdout).find((line) => line.startsWith('Perseus authorization server'));
    expect(announcement).toContain(`issuer ${issuer} (public, port ${new URL(issuer).port})`);
    expect(announcement).toContain(`mTLS ${mtlsOrigin} (port ${new URL(mtlsOrigin).port})`);
    expect(announcement).toContain(`data in ${dataDir}`);
  });

  it('made the dev trust framework in DATA_DIR/pki first, and said so', () => {
    expect(stdout).toContain(`created a dev trust framework in ${path.join(dataDir, 'pki')}`);
    for (const file of ['client-ca.pem', 'client-issuer.pem', 'server-ca.pem', 'server.pem', 'server.key.pem']) {
      expect(existsSync(path.join(dataDir, 'pki', file)), file).toBe(true);
    }
  });

  it('serves its RFC 8414 metadata on the issuer over TLS trusted through DATA_DIR/pki/server-ca.pem', async () => {
    const agent = new Agent({ connect: { ca: readFileSync(path.join(dataDir, 'pki/server-ca.pem'), 'utf8') } });
    try {
      const res = await fetch(`${issuer}/.well-known/oauth-authorization-server`, { dispatcher: agent });
      expect(res.status).toBe(200);
      const metadata = (await res.json()) as { issuer: string; token_endpoint?: string; mtls_endpoint_aliases?: Record<string, string> };
      expect(metadata.issuer).toBe(issuer);
      expect(metadata.token_endpoint).toBe(`${mtlsOrigin}/token`);
      expect(metadata.mtls_endpoint_aliases?.token_endpoint).toBe(`${mtlsOrigin}/token`);
    } finally {
      await agent.close();
    }
  });

  it('is refused by a client that trusts only the system CAs (the dev server certificate is private)', async () => {
    const agent = new Agent();
    try {
      await expect(fetch(`${issuer}/.well-known/oauth-authorization-server`, { dispatcher: agent })).rejects.toThrow();
    } finally {
      await agent.close();
    }
  });

  it('exits 0 on SIGTERM after closing its listeners, with nothing on stderr', async () => {
    child!.kill('SIGTERM');
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no exit within 10 s of SIGTERM')), 10_000));
    const { code, signal } = await Promise.race([exited, timeout]);
    expect(signal).toBeNull();
    expect(code).toBe(0);
    expect(stdout).toContain('SIGTERM: closing listeners and stores');
    expect(stderr).toBe('');
  });
});
