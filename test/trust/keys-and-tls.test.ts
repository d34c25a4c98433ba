import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';

import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { issueServerLeaf, loadIssuer } from '../../src/pki/certificate-authority.ts';
import { rotateKeys } from '../../src/provider/keys.ts';
import { pushAuthorization, smeDecides } from '../support/flows.ts';
import { formAction, hiddenField, HttpBrowser, meterChoices } from '../support/http-browser.ts';
import { oauthClient, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const SME = { email: 'keys@cafe.example', password: 'rotate me carefully', organisation: 'Corner Cafe Ltd' };

function peerCertificate(port: number, options: tls.ConnectionOptions = {}): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ...options }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve(cert);
    });
    socket.once('error', reject);
  });
}

describe('keys rotate without downtime; TLS is FAPI-shaped and reloads from disk', () => {
  let tf: TestTrustFramework;
  let server: TestServer;
  let env: Record<string, string>;
  let bankCredentials: ClientCredentials;
  let bank: OAuthClient;
  let dataProvider: OAuthClient;

  async function restart() {
    const ports: [number, number] = [server.publicPort, server.mtlsPort];
    await server.close();
    server = await startTestServer(tf, env, { ports });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    dataProvider = await oauthClient(server.issuer, dataProvider.credentials, tf.serverCa);
  }

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    bankCredentials = await tf.member('https://directory.example/a/keys-bank', ['financial-service-provider'], 'Keys Bank plc');
    const api = await tf.member('https://directory.example/a/keys-api', ['carbon-accounting-provider'], 'Keys CAP Ltd');
    env = { RESOURCE_SERVERS: api.applicationUrl };
    server = await startTestServer(tf, env);
    await server.smeAccounts.addSme({ ...SME, meters: ['1300000000001:B1'] });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    dataProvider = await oauthClient(server.issuer, api, tf.serverCa);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('publishes a staged signing key before using it, and keeps tokens valid through every step', async () => {
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    const jwks = async () => (await new HttpBrowser(server.issuer, tf.serverCa).request('/jwks')).html;
    const kidsBefore = (JSON.parse(await jwks()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);

    const staged = await rotateKeys(tf.dataDir, 'stage-signing');
    await restart();
    const published = (JSON.parse(await jwks()) as { keys: { kid: string; d?: string }[] }).keys;
    expect(published.map((k) => k.kid)).toEqual(staged.signing);
    expect(published[0].kid).toBe(kidsBefore[0]);
    expect(published.every((k) => k.d === undefined)).toBe(true);
    expect((await oauth.tokenIntrospection(dataProvider.config, tokens.access_token)).active).toBe(true);

    const promoted = await rotateKeys(tf.dataDir, 'promote-signing');
    await restart();
    expect(promoted.signing[0]).toBe(staged.signing.at(-1));
    expect((await oauth.tokenIntrospection(dataProvider.config, tokens.access_token)).active).toBe(true);
    const refreshed = await oauth.refreshTokenGrant(bank.config, tokens.refresh_token!);
    expect((await oauth.tokenIntrospection(dataProvider.config, refreshed.access_token)).active).toBe(true);

    await rotateKeys(tf.dataDir, 'retire-signing');
    await restart();
    expect((JSON.parse(await jwks()) as { keys: { kid: string }[] }).keys.map((k) => k.kid)).toEqual([promoted.signing[0]]);
    expect((await oauth.tokenIntrospection(dataProvider.config, refreshed.access_token)).active).toBe(true);
  });

  it('keeps a sign-in that started before a cookie key rotation and restart working', async () => {
    const pushed = await pushAuthorization(bank);
    const browser = new HttpBrowser(server.issuer, tf.serverCa);
    const signIn = await browser.navigate(pushed.authorizationUrl.href);
    expect(signIn.status).toBe(200);
    await rotateKeys(tf.dataDir, 'rotate-cookies');
    await restart();
    const consent = await browser.navigate(formAction(signIn.html, '/sign-in'), { form: { csrf: hiddenField(signIn.html, 'csrf'), email: SME.email, password: SME.password } });
    expect(consent.status).toBe(200);
    const done = await browser.navigate(formAction(consent.html, '/decision'), { form: { csrf: hiddenField(consent.html, 'csrf'), decision: 'allow', meter: meterChoices(consent.html) } });
    expect(done.leftTo?.searchParams.get('code')).toBeTruthy();
  });

  it('speaks only TLS 1.3 on the mTLS listener, and TLS 1.2 only with FAPI suites on the public one', async () => {
    await expect(peerCertificate(server.mtlsPort, { maxVersion: 'TLSv1.2' })).rejects.toThrow();
    expect((await peerCertificate(server.mtlsPort, { minVersion: 'TLSv1.3' })).subject).toBeTruthy();
    expect((await peerCertificate(server.publicPort, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' })).subject).toBeTruthy();
    await expect(peerCertificate(server.publicPort, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA' })).rejects.toThrow();
    await expect(peerCertificate(server.publicPort, { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' })).rejects.toThrow();
  });

  it('serves a renewed server certificate written to disk without a restart', async () => {
    const before = await peerCertificate(server.publicPort);
    const ca = await loadIssuer(readFileSync(path.join(tf.pkiDir, 'server-ca.pem'), 'utf8'), readFileSync(path.join(tf.pkiDir, 'server-ca.key.pem'), 'utf8'));
    const renewed = await issueServerLeaf(ca, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] });
    writeFileSync(server.config.tlsKeyFile, renewed.keyPem);
    writeFileSync(server.config.tlsCertFile, renewed.certificatePem);
    const until = Date.now() + 10_000;
    let after = before;
    while (after.serialNumber === before.serialNumber && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      after = await peerCertificate(server.publicPort);
    }
    expect(after.serialNumber).not.toBe(before.serialNumber);
    expect((await peerCertificate(server.mtlsPort)).serialNumber).toBe(after.serialNumber);
    // The renewed certificate still serves the real flow.
    expect((await oauthClient(server.issuer, bankCredentials, tf.serverCa)).config.serverMetadata().issuer).toBe(server.issuer);
  });
});
