import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

import * as oauth from 'openid-client';
import { chromium, type Browser, type BrowserContext, type Page, type Response } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { BANK_REDIRECT, LICENSE_EMISSIONS, pushAuthorization, type PushedAuthorization } from '../support/flows.ts';
import { startMessageReceiver, type MessageReceiver } from '../support/message-receiver.ts';
import { oauthClient, postForm, type OAuthClient } from '../support/oauth-client.ts';
import type { TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';
import { startServerWithOperator } from './operator-server.ts';

/**
 * The whole journey as an SME sees it, in a real browser: Debian's Chromium driven by
 * playwright-core, against the real server (both HTTPS listeners), a bank that uses openid-client
 * over mTLS, and the bank's message endpoint. Install the browser with scripts/install-browser.sh.
 */
const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = path.resolve(import.meta.dirname, '../../test-output/screenshots');

const SME = { email: 'owner@bakery.example', password: 'correct horse battery', organisation: 'Riverside Bakery Ltd' };
const ELECTRICITY = { spec: '1012345678901:SW1A', label: 'Electricity meter 1012345678901 (SW1A)' };
const GAS = { spec: 'gas:1234567:SW1A', label: 'Gas meter 1234567 (SW1A)' };
const BANK = { url: 'https://directory.example/a/green-loans', organisation: 'Example Bank plc', application: 'Green Loans' };
const API_URL = 'https://directory.example/a/emissions-api';
const OPERATOR = 'Demo Carbon Accounting Ltd';
const WITHDRAWAL_SUBJECT = 'https://registry.trust.ib1.org/message/withdrawal-of-permission/2025-03-16';
const IB1_FIELDS = ['account', 'client', 'dataAvailableFrom', 'evidence', 'expires', 'lastGranted', 'license', 'oauthIssuer', 'tokenExpires', 'tokenIssuedAt'];

/** The SHA-256 of a certificate's SubjectPublicKeyInfo, base64: what Chromium's SPKI allow-list takes. */
function spkiSha256(pem: string): string {
  const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

const MONTH = new Intl.DateTimeFormat('en-GB', { month: 'long', year: 'numeric', timeZone: 'UTC' });
const DAY = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });

/** What the consent page must say today, worked out here rather than by the server's code. */
function expectedDates(now: Date) {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  // Twelve whole months, ending with last month.
  const dataPeriod = `${MONTH.format(new Date(Date.UTC(y - 1, m, 1)))} to ${MONTH.format(new Date(Date.UTC(y, m - 1, 1)))} (12 whole months)`;
  // One year (P1Y) from today; 29 February gives 28 February.
  const lastDay = new Date(Date.UTC(y + 1, m + 1, 0)).getUTCDate();
  const expires = DAY.format(new Date(Date.UTC(y + 1, m, Math.min(now.getUTCDate(), lastDay))));
  return { dataPeriod, expires };
}

async function until<T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Answers the browser's navigations to `urlPattern` with a small page, redirects included, and
 * returns the list of URLs navigated to.
 *
 * Not `page.route`: Playwright never routes a request that is the target of a redirect (by
 * design, https://github.com/microsoft/playwright/pull/2617, issue #33882), and the browser
 * reaches the bank's redirect URI only by redirects (the form POST answers 303 to /authorize/…,
 * which answers 303 to the bank). Chromium's own Fetch domain, through a CDP session of the
 * page, does pause redirect targets, so the request is fulfilled there.
 */
async function answerNavigations(page: Page, urlPattern: string, html: string): Promise<string[]> {
  const answered: string[] = [];
  const cdp = await page.context().newCDPSession(page);
  cdp.on('Fetch.requestPaused', (event) => {
    // Chromium also asks the bank for /favicon.ico (sometimes before the test is done): only the
    // page navigations are counted and answered with the page; anything else gets a 404.
    const isPage = event.resourceType === 'Document';
    if (isPage) answered.push(event.request.url);
    cdp.send('Fetch.fulfillRequest', {
      requestId: event.requestId, responseCode: isPage ? 200 : 404,
      responseHeaders: [{ name: 'content-type', value: 'text/html; charset=utf-8' }],
      body: Buffer.from(isPage ? html : '').toString('base64'),
    }).catch(() => { /* the page was closed meanwhile */ });
  });
  await cdp.send('Fetch.enable', { patterns: [{ urlPattern, requestStage: 'Request' }] });
  return answered;
}

describe('an SME gives and withdraws a permission in Chromium, end to end', () => {
  let tf: TestTrustFramework;
  let receiver: MessageReceiver;
  let server: TestServer;
  let bankCredentials: ClientCredentials;
  let bank: OAuthClient;
  let dataProvider: OAuthClient;
  let browser: Browser;
  let context: BrowserContext;

  // Shared by the steps below, in order.
  let pushed: PushedAuthorization;
  let callback: URL;
  let tokens: oauth.TokenEndpointResponse;
  let record: Record<string, string>;
  let evidenceUrl: string;
  /** What went wrong in the pages so far: failed page loads and CSP violations. */
  const pageProblems: string[] = [];

  async function newPage(ctx: BrowserContext = context): Promise<Page> {
    const page = await ctx.newPage();
    // (Chromium's own /favicon.ico request answers 404; it is not a page event, so not counted.)
    page.on('response', (res) => { if (res.status() >= 400) pageProblems.push(`${res.status()} ${res.request().method()} ${res.url()}`); });
    page.on('console', (msg) => { if (/Content Security Policy|Refused to/i.test(msg.text())) pageProblems.push(`${page.url()}: ${msg.text()}`); });
    return page;
  }

  /** The value beside a term of a page's `dl.summary`. */
  function summary(page: Page, term: string) {
    return page.locator('dl.summary').first().locator(`dt:text-is("${term}") + dd`);
  }

  /** Full-page screenshot at a viewport width; at 320 px the page must not scroll sideways. */
  async function screenshotAt(page: Page, name: string, width: number) {
    await page.setViewportSize({ width, height: 800 });
    await page.screenshot({ path: path.join(SCREENSHOTS, `${name}-${width}.png`), fullPage: true });
    if (width === 320) {
      expect(Number(await page.evaluate('document.documentElement.scrollWidth')), `${name} scrolls sideways at 320 px`).toBeLessThanOrEqual(320);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  }

  async function signIn(page: Page) {
    await page.getByLabel('Email address', { exact: true }).fill(SME.email);
    await page.getByLabel('Password', { exact: true }).fill(SME.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  // A missing browser fails every step with this message (not a skip): CI must install it.
  const chromiumMissing = existsSync(CHROMIUM) ? undefined
    : `no Chromium at ${CHROMIUM}: run scripts/install-browser.sh as root (Debian's chromium package) before this test`;
  beforeEach(() => {
    if (chromiumMissing) throw new Error(chromiumMissing);
  });

  beforeAll(async () => {
    if (chromiumMissing) return;
    mkdirSync(SCREENSHOTS, { recursive: true });

    tf = await TestTrustFramework.create();
    receiver = await startMessageReceiver(tf.serverTls, tf.clientCa);
    bankCredentials = await tf.member(BANK.url, ['financial-service-provider'], BANK.organisation, BANK.application, receiver.url);
    const apiCredentials = await tf.member(API_URL, ['carbon-accounting-provider'], OPERATOR);
    server = await startServerWithOperator(tf, {
      RESOURCE_SERVERS: API_URL,
      OPERATOR_NAME: OPERATOR,
      // The receiver serves the dev server certificate: the outbox must trust its CA.
      OUTBOUND_CA_FILE: path.join(tf.pkiDir, 'server-ca.pem'),
    });
    await server.smeAccounts.addSme({ ...SME, meters: [ELECTRICITY.spec, GAS.spec] });
    bank = await oauthClient(server.issuer, bankCredentials, tf.serverCa);
    dataProvider = await oauthClient(server.issuer, apiCredentials, tf.serverCa);

    // Certificate trust: Chromium is told to accept exactly the server's leaf certificate, by the
    // SHA-256 of its public key (--ignore-certificate-errors-spki-list, honoured because Playwright
    // launches with its own fresh --user-data-dir). No `ignoreHTTPSErrors` on the context: any
    // other certificate would still be refused. Importing the dev CA into an NSS database would
    // also work but needs certutil (libnss3-tools) and a profile prepared before launch.
    // --host-resolver-rules makes every name but localhost unresolvable, so nothing leaves the
    // machine even if the interception of the bank's redirect URI below missed a request.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30_000,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
        '--no-first-run', '--disable-component-update', '--disable-sync',
        `--ignore-certificate-errors-spki-list=${spkiSha256(tf.serverTls.cert)}`,
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost',
      ],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-GB' });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await receiver?.close();
  });

  it('signs the SME in, shows who asks, the filled-in permission text, data period and end date, with a strict CSP and no script', async () => {
    pushed = await pushAuthorization(bank);
    const page = await newPage();
    const scripts: string[] = [];
    const stylesheets: string[] = [];
    page.on('request', (req) => { if (req.resourceType() === 'script') scripts.push(req.url()); });
    page.on('response', (res) => { if (res.request().resourceType() === 'stylesheet') stylesheets.push(`${res.status()} ${new URL(res.url()).pathname}`); });
    const signInPage = await page.goto(pushed.authorizationUrl.href);
    expect(signInPage?.status()).toBe(200);
    await expect(page.getByRole('heading', { name: 'Sign in' }).textContent()).resolves.toBe('Sign in');
    expect(await page.locator('p.lead').textContent()).toContain(`${BANK.organisation} is asking for permission to use your energy data`);

    const consentLoaded = page.waitForResponse((r: Response) => r.request().isNavigationRequest() && r.request().method() === 'GET'
      && /^\/interaction\/[^/]+$/.test(new URL(r.url()).pathname));
    await signIn(page);
    const consent = await consentLoaded;
    expect(consent.status()).toBe(200);
    await page.getByRole('heading', { name: 'Give permission to use your energy data' }).waitFor();
    const today = expectedDates(new Date());

    expect(await summary(page, 'Who is asking').innerText()).toBe(`${BANK.organisation} (${BANK.application})`);
    expect(await summary(page, 'Data covered').innerText()).toBe(today.dataPeriod);
    expect(await summary(page, 'Permission ends').innerText()).toBe(today.expires);
    // The license's own text, with [CAP], [FSP] and [CAP process] filled in.
    const text = page.locator('section.permission-text');
    await text.getByText(`As a reminder, ${OPERATOR} (“we”) need to have your consent to access the following data provided by Demo Energy Data Provider:`, { exact: true }).waitFor();
    await text.getByText(`Now, on behalf of ${BANK.organisation}, we seek your consent for them to process the emissions data:`, { exact: true }).waitFor();
    expect(await text.innerText()).toContain(`You can withdraw your consent at any time by visiting your permissions dashboard at ${server.issuer}/dashboard, at which point`);
    expect(await text.innerText()).not.toMatch(/\[(CAP|EDP|FSP)[^\]]*\]/);
    expect(await page.getByLabel(ELECTRICITY.label).isChecked()).toBe(true);
    expect(await page.getByLabel(GAS.label).isChecked()).toBe(true);

    // Headers of the consent page itself, as the browser received them.
    const headers = await consent.allHeaders();
    const csp = headers['content-security-policy'];
    expect(csp).toBeTruthy();
    expect(csp).not.toContain("'unsafe-inline'");
    expect(csp).toMatch(/(^|;)\s*frame-ancestors 'none'\s*(;|$)/);
    expect(await page.locator('script').count()).toBe(0);
    expect(scripts).toEqual([]);
    expect(stylesheets).toContain('200 /assets/site.css');

    await screenshotAt(page, 'consent', 1280);
    await screenshotAt(page, 'consent', 320);

    // The SME keeps the electricity meter and leaves the gas meter out.
    await page.getByLabel(GAS.label).uncheck();
    expect(await page.getByLabel(ELECTRICITY.label).isChecked()).toBe(true);

    // The answer sends the browser to the bank: answered here, nothing leaves the machine.
    const atBank = await answerNavigations(page, 'https://bank.example/*', '<!doctype html><title>Example Bank</title><p>Back at the bank.</p>');
    await Promise.all([page.waitForURL('https://bank.example/**'), page.getByRole('button', { name: 'Allow' }).click()]);
    callback = new URL(page.url());
    expect(atBank).toEqual([callback.href]);
    expect(callback.origin + callback.pathname).toBe(BANK_REDIRECT);
    expect(callback.searchParams.get('iss')).toBe(server.issuer);
    expect(callback.searchParams.get('state')).toBe(pushed.state);
    expect(callback.searchParams.get('code')).toBeTruthy();
    expect(scripts).toEqual([]);
    expect(pageProblems).toEqual([]);
    await page.close();
  });

  it('lets the bank exchange the code and read the permission record; introspection shows only the ticked meter', async () => {
    tokens = await oauth.authorizationCodeGrant(bank.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
    expect(tokens.scope).toBe(LICENSE_EMISSIONS);
    expect(tokens.refresh_token).toBeTruthy();

    const res = await postForm(`${server.mtlsOrigin}/permission`, { token: tokens.refresh_token! }, bankCredentials, tf.serverCa);
    expect(res.status).toBe(200);
    expect(Object.keys(res.json)).toEqual(['permission']);
    record = res.json.permission as Record<string, string>;
    expect(Object.keys(record).sort()).toEqual(IB1_FIELDS);
    expect(record).not.toHaveProperty('revoked');
    expect(record).toMatchObject({ oauthIssuer: server.issuer, client: BANK.url, license: LICENSE_EMISSIONS });
    expect(record.account).toMatch(/^acct_/);
    expect(record.evidence).toMatch(new RegExp(`^${server.issuer}/evidence/[\\w-]{32}$`));
    // The end date the SME was shown is the record's.
    expect(DAY.format(new Date(record.expires))).toBe(expectedDates(new Date(record.lastGranted)).expires);
    // Meters are for the data provider, not in the permission record.
    expect(JSON.stringify(res.json)).not.toMatch(/meter|1012345678901|1234567/i);

    const introspected = await oauth.tokenIntrospection(dataProvider.config, tokens.access_token);
    expect(introspected.active).toBe(true);
    expect(introspected.account).toBe(record.account);
    expect(introspected.meters).toEqual([{ id: '1012345678901', type: 'electricity', ukPostcodeOutcode: 'SW1A' }]);
  });

  it('shows the permission as Active on the dashboard and withdraws it after confirmation', async () => {
    const page = await newPage();
    expect((await page.goto(`${server.issuer}/dashboard`))?.status()).toBe(200);
    await signIn(page);
    await page.getByRole('heading', { name: 'Your permissions' }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/dashboard');

    const permission = page.getByRole('region', { name: `Permission for ${BANK.organisation}` });
    expect(await permission.getByRole('heading', { level: 2 }).innerText()).toBe(BANK.organisation);
    expect(await permission.locator('.status').innerText()).toBe('Active');
    expect(await permission.locator('dt:text-is("Meters") + dd').innerText()).toBe('Electricity 1012345678901');
    evidenceUrl = new URL((await permission.getByRole('link', { name: 'Evidence of this permission' }).getAttribute('href'))!, server.issuer).href;
    expect(evidenceUrl).toBe(record.evidence);

    await screenshotAt(page, 'dashboard', 1280);
    await screenshotAt(page, 'dashboard', 320);

    await Promise.all([page.waitForURL(/\/dashboard\/permissions\/[^/]+\/withdraw$/), permission.getByRole('link', { name: 'Withdraw', exact: true }).click()]);
    await page.getByRole('heading', { name: 'Withdraw your permission?' }).waitFor();
    expect(await page.locator('main').innerText()).toContain(`${BANK.organisation} will no longer be able to use your energy data`);
    await Promise.all([page.waitForURL(/\/dashboard\?withdrawn=1$/), page.getByRole('button', { name: 'Withdraw permission' }).click()]);

    expect(await page.getByRole('status').innerText()).toBe('The permission was withdrawn. The organisation has been told.');
    expect(await permission.locator('.status').innerText()).toBe('Withdrawn');
    expect(await permission.getByRole('link', { name: 'Withdraw', exact: true }).count()).toBe(0);
    expect(pageProblems).toEqual([]);
    await page.close();
  });

  it('ends access at once, keeps the record with revoked and the same expires, and tells the bank exactly once', async () => {
    expect((await oauth.tokenIntrospection(dataProvider.config, tokens.access_token)).active).toBe(false);
    await expect(oauth.refreshTokenGrant(bank.config, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });

    const res = await postForm(`${server.mtlsOrigin}/permission`, { token: tokens.refresh_token! }, bankCredentials, tf.serverCa);
    expect(res.status).toBe(200);
    const after = res.json.permission as Record<string, string>;
    expect(Object.keys(after).sort()).toEqual([...IB1_FIELDS, 'revoked'].sort());
    expect(after.expires).toBe(record.expires);
    expect(after.revoked).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Date.parse(after.revoked)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(after.revoked)).toBeGreaterThanOrEqual(Date.parse(record.lastGranted));

    const [message] = await until('the withdrawal message at the bank', () => (receiver.received.length > 0 ? receiver.received : undefined), 10_000);
    expect(message.body).toEqual({
      'ib1:message': server.config.trustFrameworkUrl,
      subject: WITHDRAWAL_SUBJECT,
      body: { token: tokens.refresh_token },
    });
    expect(message.senderUrl).toBe(server.config.operatorApplicationUrl);
    // Still one a moment later: no second delivery of the same withdrawal.
    await new Promise((r) => setTimeout(r, 500));
    expect(receiver.received).toHaveLength(1);
  });

  it('opens the evidence page without a session: grant and withdrawal listed, no organisation name or email', async () => {
    const fresh = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    try {
      expect(await fresh.cookies()).toEqual([]);
      const page = await newPage(fresh);
      const res = await page.goto(evidenceUrl);
      expect(res?.status()).toBe(200);
      expect(new URL(page.url()).pathname).toBe(new URL(evidenceUrl).pathname);
      await page.getByRole('heading', { name: 'Evidence of permission' }).waitFor();
      const history = await page.locator('ol.history').innerText();
      expect(history).toMatch(/Permission given .* UTC/);
      expect(history).toMatch(/Permission withdrawn .* UTC \(by the organisation\)/);
      expect(await summary(page, 'Status').innerText()).toBe('Withdrawn');
      expect(await page.locator('main').innerText()).toContain(BANK.organisation);

      const html = await page.content();
      for (const secret of [SME.organisation, SME.email, '1012345678901']) expect(html).not.toContain(secret);
      expect((await res!.allHeaders())['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(await page.locator('script').count()).toBe(0);
      await screenshotAt(page, 'evidence', 320);
      expect(pageProblems).toEqual([]);
    } finally {
      await fresh.close();
    }
  });
});
