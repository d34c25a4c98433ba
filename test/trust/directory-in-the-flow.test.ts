import { writeFileSync } from 'node:fs';
import path from 'node:path';

import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { hashIdentifier } from '../../src/adapters/oidc-adapter-common.ts';
import { ensureDevTrustFramework } from '../../src/config/dev-setup.ts';
import { loadConfig } from '../../src/config/environment.ts';
import { roleUrl } from '../../src/pki/dev-trust-framework.ts';
import { FakeIb1Services } from '../support/fake-ib1-services.ts';
import { pushAuthorization } from '../support/flows.ts';
import { formAction, hiddenField, HttpBrowser, meterChoices } from '../support/http-browser.ts';
import { startMessageReceiver, type MessageReceiver } from '../support/message-receiver.ts';
import { oauthClient, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework } from '../support/trust-framework.ts';

const SME = { email: 'dir@pottery.example', password: 'names from the directory', organisation: 'Kiln Pottery Ltd' };

describe('the IB1 Directory names the client on the consent page and tells where withdrawals go', () => {
  let tf: TestTrustFramework;
  let directory: FakeIb1Services;
  let receiver: MessageReceiver;
  let server: TestServer;
  let bank: OAuthClient;

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    directory = await FakeIb1Services.start();
    receiver = await startMessageReceiver(tf.serverTls, tf.clientCa);
    const appUrl = directory.url('/a/green-loans');
    const memberUrl = directory.url('/m/example-bank');
    directory.set('/a/green-loans', { body: { id: appUrl, publisher: memberUrl, title: 'Green Loans (from the Directory)', role: [roleUrl('financial-service-provider')], messageDelivery: receiver.url }, cacheControl: 'max-age=60' });
    directory.set('/m/example-bank', { body: { id: memberUrl, legalName: 'Example Bank Directory Name plc', brand: { name: 'Example Bank' }, roles: [roleUrl('financial-service-provider')] }, cacheControl: 'max-age=60' });
    // The bank's certificate names its Directory application URL; the local directory file does not know it.
    const credentials = await tf.longLivedMember(appUrl, ['financial-service-provider'], 'Certificate Org Name', 2);
    const caFile = path.join(tf.dataDir, 'ib1-ca.pem');
    writeFileSync(caFile, directory.ca);
    const env = { DIRECTORY_URL: directory.url(''), IB1_CA_FILE: caFile, OUTBOUND_CA_FILE: path.join(tf.pkiDir, 'server-ca.pem'), OPERATOR_APPLICATION_URL: 'https://directory.example/a/dir-operator' };
    await ensureDevTrustFramework(loadConfig({ ...env, DATA_DIR: tf.dataDir }));
    server = await startTestServer(tf, env);
    await server.smeAccounts.addSme({ ...SME, meters: ['1700000000001:BS1'] });
    bank = await oauthClient(server.issuer, credentials, tf.serverCa);
  });
  afterAll(async () => {
    await server?.close();
    await receiver?.close();
    await directory?.close();
  });

  it('shows the Directory names on the consent page and delivers the withdrawal to the Directory messageDelivery URL', async () => {
    const pushed = await pushAuthorization(bank);
    const browser = new HttpBrowser(server.issuer, tf.serverCa);
    const signIn = await browser.navigate(pushed.authorizationUrl.href);
    const consent = await browser.navigate(formAction(signIn.html, '/sign-in'), { form: { csrf: hiddenField(signIn.html, 'csrf'), email: SME.email, password: SME.password } });
    expect(consent.html).toContain('Example Bank Directory Name plc');
    expect(consent.html).toContain('Green Loans (from the Directory)');
    expect(consent.html).not.toContain('Certificate Org Name');
    const done = await browser.navigate(formAction(consent.html, '/decision'), { form: { csrf: hiddenField(consent.html, 'csrf'), decision: 'allow', meter: meterChoices(consent.html) } });
    const tokens = await oauth.authorizationCodeGrant(bank.config, done.leftTo!, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    const link = await server.permissions.store.refreshTokenLink(hashIdentifier(tokens.refresh_token!));
    const permission = (await server.permissions.store.byGrantId(link!.grantId))!;
    await server.permissions.withdraw(permission.id, 'sme', 'usr_dir', 'directory test');
    const until = Date.now() + 10_000;
    while (receiver.received.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(receiver.received.map((m) => (m.body.body as { token: string }).token)).toEqual([tokens.refresh_token]);
    // Cached per Cache-Control: the Directory was asked once for the application.
    expect(directory.count('/a/green-loans')).toBe(1);
  });
});
