import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { openDomain } from '../../src/consent/domain.ts';
import { ensureDevTrustFramework } from '../../src/config/dev-setup.ts';
import { loadConfig } from '../../src/config/environment.ts';
import { recordApplication } from '../../src/pki/directory-file.ts';
import { roleUrl } from '../../src/pki/dev-trust-framework.ts';
import { BANK_REDIRECT, pushAuthorization, smeDecides } from '../support/flows.ts';
import { formAction, hiddenField, HttpBrowser, meterChoices } from '../support/http-browser.ts';
import { startMessageReceiver, type MessageReceiver } from '../support/message-receiver.ts';
import { oauthClient, postForm, type OAuthClient } from '../support/oauth-client.ts';
import { serverProcess, type ServerProcess } from '../support/server-process.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const SME = { email: 'crash@foundry.example', password: 'killed and restarted', organisation: 'Iron Foundry Ltd' };
const run = promisify(execFile);

describe('the server killed with SIGKILL mid-step loses nothing and leaves nothing half written', () => {
  let tf: TestTrustFramework;
  let server: ServerProcess;
  let receiver: MessageReceiver;
  let bankCredentials: ClientCredentials;
  let api: ClientCredentials;
  let bank: OAuthClient;

  const domain = async () => openDomain(loadConfig(server.env), { now: () => new Date() });
  const restart = async () => {
    await server.kill();
    await server.start();
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
  };
  const active = async (token: string) => (await postForm(`${server.mtlsOrigin}/introspect`, { client_id: api.applicationUrl, token }, api, tf.serverCa)).json.active;

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    receiver = await startMessageReceiver(tf.serverTls, tf.clientCa);
    bankCredentials = await tf.member('https://directory.example/a/crash-bank', ['financial-service-provider'], 'Crash Bank plc');
    recordApplication(tf.directoryFile, { url: bankCredentials.applicationUrl, id: bankCredentials.applicationUrl, title: 'Crash Bank', organisation: 'Crash Bank plc', roles: [roleUrl('financial-service-provider')], messageDelivery: receiver.url });
    api = await tf.member('https://directory.example/a/crash-api', ['carbon-accounting-provider'], 'Crash CAP Ltd');
    server = await serverProcess({ DATA_DIR: tf.dataDir, RESOURCE_SERVERS: api.applicationUrl, OUTBOUND_CA_FILE: path.join(tf.pkiDir, 'server-ca.pem'), OPERATOR_APPLICATION_URL: 'https://directory.example/a/crash-operator' });
    await ensureDevTrustFramework(loadConfig(server.env));
    await run(process.execPath, ['--disable-warning=ExperimentalWarning', 'src/cli.ts', 'sme', 'add', '--email', SME.email, '--password', SME.password, '--organisation', SME.organisation, '--meter', '1600000000001:S1'], { env: { ...process.env, ...server.env } });
    await server.start();
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
  });
  afterAll(async () => {
    await server?.stop();
    await receiver?.close();
  });

  it('killed between sign-in and decision: no permission appears; after restart the flow can finish', async () => {
    const d = await domain();
    const organisation = (await d.smeAccounts.findOrganisation(SME.organisation))!;
    const before = (await d.permissionStore.byOrganisation(organisation.id)).length;
    await d.close();
    const pushed = await pushAuthorization(bank);
    const browser = new HttpBrowser(server.issuer, tf.serverCa);
    const signIn = await browser.navigate(pushed.authorizationUrl.href);
    const consent = await browser.navigate(formAction(signIn.html, '/sign-in'), { form: { csrf: hiddenField(signIn.html, 'csrf'), email: SME.email, password: SME.password } });
    await restart();
    const d2 = await domain();
    expect((await d2.permissionStore.byOrganisation(organisation.id)).length).toBe(before);
    await d2.close();
    // The interaction lives in the store, so the SME's decision still lands after the restart.
    const done = await browser.navigate(formAction(consent.html, '/decision'), { form: { csrf: hiddenField(consent.html, 'csrf'), decision: 'allow', meter: meterChoices(consent.html) } });
    const code = done.leftTo?.searchParams.get('code');
    expect(code).toBeTruthy();
    const tokens = await postForm(`${server.mtlsOrigin}/token`, { client_id: bankCredentials.applicationUrl, grant_type: 'authorization_code', code: code!, redirect_uri: BANK_REDIRECT, code_verifier: pushed.codeVerifier }, bankCredentials, tf.serverCa);
    expect(tokens.status).toBe(200);
  });

  it('killed during a burst of token exchanges: the code was redeemed at most once and what was issued is consistent', async () => {
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    const form = { client_id: bankCredentials.applicationUrl, grant_type: 'authorization_code', code: callback.searchParams.get('code')!, redirect_uri: BANK_REDIRECT, code_verifier: pushed.codeVerifier };
    const burst = Array.from({ length: 30 }, () => postForm(`${server.mtlsOrigin}/token`, form, bankCredentials, tf.serverCa).catch(() => ({ status: 0, json: {} as Record<string, unknown> })));
    await new Promise((r) => setTimeout(r, 15));
    await server.kill();
    const answers = await Promise.all(burst);
    await server.start();
    const winners = answers.filter((a) => a.status === 200);
    expect(winners.length).toBeLessThanOrEqual(1);
    expect(answers.filter((a) => a.status >= 500)).toHaveLength(0);
    const again = await postForm(`${server.mtlsOrigin}/token`, form, bankCredentials, tf.serverCa);
    if (winners.length === 1) {
      // Redeemed before the kill: a reuse after restart is refused and the winner's tokens die.
      expect(again.status).toBe(400);
      expect(await active(String(winners[0].json.access_token))).toBe(false);
    } else {
      // Never redeemed: it can be redeemed now, exactly once.
      expect(again.status).toBe(200);
      expect((await postForm(`${server.mtlsOrigin}/token`, form, bankCredentials, tf.serverCa)).status).toBe(400);
    }
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
  });

  it('killed while delivering a withdrawal message: the message is delivered after restart, the withdrawal recorded once, the audit chain intact', { timeout: 60_000 }, async () => {
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    const d = await domain();
    const link = await d.permissionStore.refreshTokenLink(hashIdentifier(tokens.refresh_token!));
    const permission = (await d.permissionStore.byGrantId(link!.grantId))!;
    await d.close();
    receiver.failNext(1000);
    await run(process.execPath, ['--disable-warning=ExperimentalWarning', 'src/cli.ts', 'permission', 'withdraw', '--id', permission.id], { env: { ...process.env, ...server.env } });
    const until = Date.now() + 10_000;
    while (receiver.attempts === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await server.kill();
    receiver.failNext(0);
    await server.start();
    // Killed mid-delivery, the message is leased for LEASE_MS (15 s), then due again.
    const deadline = Date.now() + 40_000;
    const mine = () => receiver.received.filter((m) => (m.body.body as { token?: string }).token === tokens.refresh_token);
    while (mine().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(mine().length).toBeGreaterThanOrEqual(1);
    const d2 = await domain();
    expect((await d2.permissionStore.history(permission.id)).filter((e) => e.kind === 'revoked')).toHaveLength(1);
    expect(await d2.audit.verify()).toMatchObject({ ok: true });
    await d2.close();
    expect(await active(tokens.access_token)).toBe(false);
  });

  it('stopped with SIGTERM while a message is failing to deliver: shutdown loses no message', { timeout: 60_000 }, async () => {
    const pushed = await pushAuthorization(bank);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    const tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    const d = await domain();
    const link = await d.permissionStore.refreshTokenLink(hashIdentifier(tokens.refresh_token!));
    const permission = (await d.permissionStore.byGrantId(link!.grantId))!;
    await d.close();
    receiver.failNext(1000);
    const attempts = receiver.attempts;
    await run(process.execPath, ['--disable-warning=ExperimentalWarning', 'src/cli.ts', 'permission', 'withdraw', '--id', permission.id], { env: { ...process.env, ...server.env } });
    const until = Date.now() + 10_000;
    while (receiver.attempts === attempts && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    await server.stop();
    receiver.failNext(0);
    await server.start();
    const deadline = Date.now() + 40_000;
    const mine = () => receiver.received.filter((m) => (m.body.body as { token?: string }).token === tokens.refresh_token);
    while (mine().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(mine().length).toBeGreaterThanOrEqual(1);
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
  });
});
