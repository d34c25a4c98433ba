import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

import * as oauth from 'openid-client';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { ensureDevTrustFramework } from '../../src/config/dev-setup.ts';
import { loadConfig } from '../../src/config/environment.ts';
import { pushAuthorization, smeDecides } from '../support/flows.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { startMessageReceiver, type MessageReceiver } from '../support/message-receiver.ts';
import { oauthClient, postForm, type OAuthClient } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const SME = { email: 'ops@laundry.example', password: 'clean sheets every day', organisation: 'Bright Laundry Ltd' };
const IB1_FIELDS = ['oauthIssuer', 'client', 'license', 'account', 'lastGranted', 'expires', 'evidence', 'dataAvailableFrom', 'tokenIssuedAt', 'tokenExpires'];

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a permission through its life: record, renewal, expiry, withdrawal, messages', () => {
  let tf: TestTrustFramework;
  let server: TestServer;
  let receiver: MessageReceiver;
  let bankCredentials: ClientCredentials;
  let bank: OAuthClient;
  let otherBank: OAuthClient;
  let dataProvider: OAuthClient;
  let env: Record<string, string>;

  async function grantedTokens(client: OAuthClient = bank) {
    const pushed = await pushAuthorization(client);
    const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, SME);
    return oauth.authorizationCodeGrant(client.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
  }
  const permissionOf = (token: string, credentials = bankCredentials) =>
    postForm(`${server.mtlsOrigin}/permission`, { token }, credentials, tf.serverCa);
  const introspect = async (token: string) => (await oauth.tokenIntrospection(dataProvider.config, token)).active;

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    receiver = await startMessageReceiver(tf.serverTls, tf.clientCa);
    bankCredentials = await tf.longLivedMember('https://directory.example/a/lender', ['financial-service-provider'], 'Lender plc', 3);
    // The directory entry says where the bank receives messages.
    const { recordApplication } = await import('../../src/pki/directory-file.ts');
    const { roleUrl } = await import('../../src/pki/dev-trust-framework.ts');
    recordApplication(tf.directoryFile, { url: bankCredentials.applicationUrl, id: bankCredentials.applicationUrl, title: 'Lender', organisation: 'Lender plc', roles: [roleUrl('financial-service-provider')], messageDelivery: receiver.url });
    const other = await tf.longLivedMember('https://directory.example/a/other-lender', ['financial-service-provider'], 'Other Lender plc', 3);
    const api = await tf.longLivedMember('https://directory.example/a/emissions-api', ['carbon-accounting-provider'], 'Demo CAP Ltd', 3);
    env = { RESOURCE_SERVERS: api.applicationUrl, OUTBOUND_CA_FILE: path.join(tf.pkiDir, 'server-ca.pem'), OPERATOR_APPLICATION_URL: 'https://directory.example/a/demo-cap-operator' };
    // The operator's own member certificate, as `npm start` makes it on a fresh checkout.
    await ensureDevTrustFramework(loadConfig({ ...env, DATA_DIR: tf.dataDir }));
    server = await startTestServer(tf, env);
    await server.smeAccounts.addSme({ ...SME, meters: ['1100000000001:M1', '1100000000002:M1'] });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    otherBank = await oauthClient(server.issuer, other, tf.serverCa);
    dataProvider = await oauthClient(server.issuer, api, tf.serverCa);
  });
  afterAll(async () => {
    await server?.close();
    await receiver?.close();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('answers the permission endpoint with exactly the IB1 fields, and no revoked while active', async () => {
    const tokens = await grantedTokens();
    const res = await permissionOf(tokens.refresh_token!);
    expect(res.status).toBe(200);
    const record = res.json.permission as Record<string, string>;
    expect(Object.keys(record).sort()).toEqual([...IB1_FIELDS].sort());
    expect(record.oauthIssuer).toBe(server.issuer);
    expect(record.client).toBe(bankCredentials.applicationUrl);
    expect(record.account).toMatch(/^acct_/);
    for (const field of ['lastGranted', 'expires', 'dataAvailableFrom', 'tokenIssuedAt', 'tokenExpires']) expect(record[field]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(new Date(record.tokenExpires).getTime()).toBeLessThanOrEqual(new Date(record.expires).getTime());
    // One year, to the second.
    const granted = new Date(record.lastGranted);
    expect(new Date(record.expires).getUTCFullYear()).toBe(granted.getUTCFullYear() + 1);
    const evidence = await new HttpBrowser(server.issuer, tf.serverCa).navigate(record.evidence);
    expect(evidence.status).toBe(200);
    expect(evidence.html).toContain('Permission given');
    expect(evidence.html).not.toContain(SME.organisation);
    expect(evidence.html).not.toContain(SME.email);
  });

  it('refuses access tokens there, and hides other clients\u2019 tokens behind 404', async () => {
    const tokens = await grantedTokens();
    const access = await permissionOf(tokens.access_token);
    expect(access.status).toBe(400);
    expect(access.json.error).toBe('unsupported_token_type');
    const foreign = await permissionOf(tokens.refresh_token!, otherBank.credentials);
    expect(foreign.status).toBe(404);
    expect((await permissionOf('no-such-token')).status).toBe(404);
  });

  it('renews the same record when the SME grants again, keeps both in the history, and a withdrawal ends both grants', async () => {
    const first = await grantedTokens();
    const before = (await permissionOf(first.refresh_token!)).json.permission as Record<string, string>;
    await new Promise((r) => setTimeout(r, 1100));
    const second = await grantedTokens();
    const after = (await permissionOf(second.refresh_token!)).json.permission as Record<string, string>;
    expect(after.evidence).toBe(before.evidence);
    expect(after.account).toBe(before.account);
    expect(new Date(after.lastGranted).getTime()).toBeGreaterThan(new Date(before.lastGranted).getTime());
    expect(new Date(after.expires).getTime()).toBeGreaterThan(new Date(before.expires).getTime());
    // The earlier grant is not retired by the renewal (so simultaneous decisions both complete)...
    expect(await introspect(first.access_token)).toBe(true);
    expect(await introspect(second.access_token)).toBe(true);
    const permission = await server.permissions.store.byOrganisation(((await server.smeAccounts.findOrganisation(SME.organisation)))!.id);
    const current = permission.find((p) => !p.revoked && p.clientId === bankCredentials.applicationUrl)!;
    const kinds = (await server.permissions.store.history(current.id)).map((e) => e.kind);
    expect(kinds.filter((k) => k === 'granted')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'renewed').length).toBeGreaterThanOrEqual(1);
    // ...but a withdrawal ends every grant the permission ever had.
    await server.permissions.withdraw(current.id, 'sme', 'usr_test', 'ending both grants');
    expect(await introspect(first.access_token)).toBe(false);
    expect(await introspect(second.access_token)).toBe(false);
    await expect(oauth.refreshTokenGrant(bank.config, first.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('expires without being revoked: tokens and refresh stop, the record keeps no revoked', async () => {
    const tokens = await grantedTokens(otherBank);
    const before = (await permissionOf(tokens.refresh_token!, otherBank.credentials)).json.permission as Record<string, string>;
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date(before.expires).getTime() + 60_000);
    expect(await introspect(tokens.access_token)).toBe(false);
    await expect(oauth.refreshTokenGrant(otherBank.config, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(await server.permissions.recordExpiries()).toBeGreaterThanOrEqual(1);
    const after = (await permissionOf(tokens.refresh_token!, otherBank.credentials)).json.permission as Record<string, string>;
    expect(after).not.toHaveProperty('revoked');
    expect(after.expires).toBe(before.expires);
    const p = await server.permissions.store.byGrantId((await server.permissions.store.refreshTokenLink((await import('../../src/adapters/oidc-adapter-common.ts')).hashIdentifier(tokens.refresh_token!)))!.grantId);
    expect((await server.permissions.store.history(p!.id)).map((e) => e.kind)).toContain('expired');
  });

  it('withdraws once when the SME and the client withdraw at the same moment', async () => {
    const tokens = await grantedTokens();
    const link = await server.permissions.store.refreshTokenLink((await import('../../src/adapters/oidc-adapter-common.ts')).hashIdentifier(tokens.refresh_token!));
    const permission = (await server.permissions.store.byGrantId(link!.grantId))!;
    const delivered = receiver.received.length;
    await Promise.all([
      server.permissions.withdraw(permission.id, 'sme', 'usr_test', 'withdrawn in a race'),
      oauth.tokenRevocation(bank.config, tokens.refresh_token!),
    ]);
    const history = await server.permissions.store.history(permission.id);
    expect(history.filter((e) => e.kind === 'revoked')).toHaveLength(1);
    const record = (await permissionOf(tokens.refresh_token!)).json.permission as Record<string, string>;
    expect(record.revoked).toBeTruthy();
    expect(await introspect(tokens.access_token)).toBe(false);
    // If the SME's withdrawal won, the client is told; if the client's did, it already knows.
    const stored = (await server.permissions.store.byId(permission.id))!;
    if (stored.revokedBy === 'sme') await waitFor('the withdrawal message', () => receiver.received.length > delivered);
  });

  it('withdraws when the client revokes its own token (RFC 7009), and sends it no message', async () => {
    const tokens = await grantedTokens();
    const received = receiver.received.length;
    await oauth.tokenRevocation(bank.config, tokens.access_token);
    const record = (await permissionOf(tokens.refresh_token!)).json.permission as Record<string, string>;
    expect(record.revoked).toBeTruthy();
    const link = await server.permissions.store.refreshTokenLink((await import('../../src/adapters/oidc-adapter-common.ts')).hashIdentifier(tokens.refresh_token!));
    expect((await server.permissions.store.byGrantId(link!.grantId))!.revokedBy).toBe('client');
    await expect(oauth.refreshTokenGrant(bank.config, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    await server.outbox.runOnce();
    expect(receiver.received.length).toBe(received);
  });

  it('delivers the withdrawal message over mTLS after the receiver was down, exactly once', async () => {
    const tokens = await grantedTokens();
    const link = await server.permissions.store.refreshTokenLink((await import('../../src/adapters/oidc-adapter-common.ts')).hashIdentifier(tokens.refresh_token!));
    const permission = (await server.permissions.store.byGrantId(link!.grantId))!;
    receiver.failNext(2);
    const attemptsBefore = receiver.attempts;
    await server.permissions.withdraw(permission.id, 'sme', 'usr_test', 'testing retries');
    const message = await waitFor('a delivered message', () => receiver.received.find((m) => (m.body.body as { token?: string }).token === tokens.refresh_token), 15_000);
    expect(receiver.attempts - attemptsBefore).toBeGreaterThanOrEqual(3);
    expect(message.body).toEqual({
      'ib1:message': server.config.trustFrameworkUrl,
      subject: 'https://registry.trust.ib1.org/message/withdrawal-of-permission/2025-03-16',
      body: { token: tokens.refresh_token },
    });
    expect(message.senderUrl).toBe(server.config.operatorApplicationUrl);
    // Withdrawing again changes nothing and sends nothing more.
    await server.permissions.withdraw(permission.id, 'sme', 'usr_test', 'again');
    await server.outbox.runOnce();
    expect(receiver.received.filter((m) => (m.body.body as { token?: string }).token === tokens.refresh_token)).toHaveLength(1);
  });

  it('keeps a queued message across a restart and delivers it afterwards', async () => {
    const tokens = await grantedTokens();
    const link = await server.permissions.store.refreshTokenLink((await import('../../src/adapters/oidc-adapter-common.ts')).hashIdentifier(tokens.refresh_token!));
    const permission = (await server.permissions.store.byGrantId(link!.grantId))!;
    receiver.failNext(1000);
    await server.permissions.withdraw(permission.id, 'operator', 'operator', 'restart test');
    await waitFor('a failed attempt', () => receiver.attempts > 0 && receiver.received.every((m) => (m.body.body as { token?: string }).token !== tokens.refresh_token));
    await server.close();
    receiver.failNext(0);
    server = await startTestServer(tf, env);
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    otherBank = await oauthClient(server.issuer, otherBank.credentials, tf.serverCa);
    dataProvider = await oauthClient(server.issuer, dataProvider.credentials, tf.serverCa);
    await waitFor('the message after restart', () => receiver.received.find((m) => (m.body.body as { token?: string }).token === tokens.refresh_token), 15_000);
  });

  it('lets the operator withdraw from the CLI while the server runs, and the audit chain verifies', async () => {
    const tokens = await grantedTokens();
    const link = await server.permissions.store.refreshTokenLink((await import('../../src/adapters/oidc-adapter-common.ts')).hashIdentifier(tokens.refresh_token!));
    const permission = (await server.permissions.store.byGrantId(link!.grantId))!;
    const cliEnv = { ...process.env, ...env, ISSUER: server.issuer, MTLS_ORIGIN: server.mtlsOrigin, DATA_DIR: tf.dataDir };
    const run = promisify(execFile);
    const out = await run(process.execPath, ['--disable-warning=ExperimentalWarning', 'src/cli.ts', 'permission', 'withdraw', '--id', permission.id, '--reason', 'fraud suspected'], { env: cliEnv });
    expect(out.stdout).toContain(`withdrew ${permission.id}`);
    expect(await introspect(tokens.access_token)).toBe(false);
    const record = (await permissionOf(tokens.refresh_token!)).json.permission as Record<string, string>;
    expect(record.revoked).toBeTruthy();
    await waitFor('the operator withdrawal message', () => receiver.received.find((m) => (m.body.body as { token?: string }).token === tokens.refresh_token), 15_000);
    const verify = await run(process.execPath, ['--disable-warning=ExperimentalWarning', 'src/cli.ts', 'audit', 'verify'], { env: cliEnv });
    expect(verify.stdout).toMatch(/audit chain verified: \d+ events/);
    const kinds = new Set((await server.audit.list({ limit: 10_000 })).map((e) => e.kind));
    for (const kind of ['par', 'sign_in', 'decision', 'token_issued', 'withdrawal', 'message_delivered', 'revocation', 'expiry_seen']) expect(kinds, kind).toContain(kind);
  });
});
