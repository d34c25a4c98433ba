// End-to-end check of the proposed wiring (CRL_FILES, TRUSTED_PROXIES, CLIENT_CERT_HEADER) through the real server.
// Once src/server.ts, src/config/environment.ts and src/http/client-certificate.ts are wired, this can move to
// test/trust/crl-wiring.test.ts with `../support/...` and `../../src/...` import paths.
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { issueCrl, loadIssuer } from '../../src/pki/certificate-authority.ts';
import { postForm } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

let tf: TestTrustFramework;
let server: TestServer;
let good: ClientCredentials;
let revoked: ClientCredentials;
const lines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  tf = await TestTrustFramework.create();
  good = await tf.member('https://directory.example/a/bank-one', ['financial-service-provider'], 'Bank One plc');
  revoked = await tf.member('https://directory.example/a/bank-two', ['financial-service-provider'], 'Bank Two plc');
  const pem = (file: string) => readFileSync(path.join(tf.pkiDir, file), 'utf8');
  const issuer = await loadIssuer(pem('client-issuer.pem'), pem('client-issuer.key.pem'));
  const root = await loadIssuer(pem('client-ca.pem'), pem('client-ca.key.pem'));
  const crlFile = path.join(tf.dataDir, 'crls.pem');
  writeFileSync(crlFile, (await issueCrl(issuer, { revokedSerials: [new X509Certificate(revoked.cert).serialNumber] })).pem + (await issueCrl(root)).pem);
  // The "proxy" connects from 127.0.0.2; direct clients from 127.0.0.1.
  server = await startTestServer(tf, { CRL_FILES: crlFile, TRUSTED_PROXIES: '127.0.0.2', CLIENT_CERT_HEADER: 'x-ssl-client-escaped-cert' }, { log: (line) => lines.push(line) });
});
afterAll(async () => {
  await server?.close();
});

const form = (c: ClientCredentials) => ({ client_id: c.applicationUrl, response_type: 'code', redirect_uri: 'https://bank.example/cb', scope: 'x' });

async function postViaProxy(credentials: ClientCredentials, agent: Agent) {
  const res = await undiciFetch(`${server.mtlsOrigin}/par`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-ssl-client-escaped-cert': encodeURIComponent(credentials.cert) },
    body: new URLSearchParams(form(credentials)).toString(),
    dispatcher: agent,
  });
  return { status: res.status, text: await res.text() };
}

it('refuses a revoked member certificate with 401 and accepts a good one', async () => {
  expect((await postForm(`${server.mtlsOrigin}/par`, form(revoked), revoked, tf.serverCa)).status).toBe(401);
  expect((await postForm(`${server.mtlsOrigin}/par`, form(good), good, tf.serverCa)).status).not.toBe(401);
  expect(lines.filter((l) => l.msg === 'request' && l.route === '/par').map((l) => l.client)).toEqual([undefined, good.applicationUrl]);
});

it('reports CRL state on /health/ready', async () => {
  const res = await undiciFetch(`${server.issuer}/health/ready`, { dispatcher: new Agent({ connect: { ca: tf.serverCa } }) });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { crl: Array<{ state: string }> }).crl.map((s) => s.state)).toEqual(['ok']);
});

it('takes the client certificate from a trusted proxy header, and ignores it from anyone else', async () => {
  const proxy = new Agent({ localAddress: '127.0.0.2', connect: { ca: tf.serverCa } });
  const direct = new Agent({ connect: { ca: tf.serverCa } });
  const bad = await postViaProxy(revoked, proxy);
  expect(bad.status).toBe(401);
  expect(bad.text).toMatch(/revoked/);
  expect((await postViaProxy(good, proxy)).status).not.toBe(401);
  const spoofed = await postViaProxy(good, direct);
  expect(spoofed.status).toBe(401);
  expect(spoofed.text).toMatch(/no client certificate/);
});
