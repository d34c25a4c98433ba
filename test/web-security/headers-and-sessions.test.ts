import { Agent, fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pushAuthorization } from '../support/flows.ts';
import { hiddenField, HttpBrowser } from '../support/http-browser.ts';
import { oauthClient, postForm } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework } from '../support/trust-framework.ts';

const SME = { email: 'web@dairy.example', password: 'cookies and headers', organisation: 'Valley Dairy Ltd' };

describe('web and protocol security of the pages and machine endpoints', () => {
  let tf: TestTrustFramework;
  let server: TestServer;

  beforeAll(async () => {
    tf = await TestTrustFramework.create();
    server = await startTestServer(tf);
    await server.smeAccounts.addSme(SME);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('sends HSTS, a script-free CSP with frame-ancestors none, nosniff and no-referrer on pages and machine answers', async () => {
    const page = await new HttpBrowser(server.issuer, tf.serverCa).request('/dashboard');
    const machine = await postForm(`${server.mtlsOrigin}/token`, {}, undefined, tf.serverCa);
    for (const headers of [page.headers, machine.headers]) {
      expect(headers.get('strict-transport-security')).toMatch(/max-age=\d{7,}/);
      expect(headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      expect(headers.get('content-security-policy')).not.toMatch(/unsafe-inline|unsafe-eval|script-src/);
      expect(headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(headers.get('x-content-type-options')).toBe('nosniff');
      expect(headers.get('referrer-policy')).toBe('no-referrer');
    }
  });

  it('sets every cookie Secure, HttpOnly and SameSite, on the interaction and the dashboard alike', async () => {
    const bank = await oauthClient(server.issuer, await tf.member('https://directory.example/a/web-bank', ['financial-service-provider'], 'Web Bank plc'), tf.serverCa);
    const pushed = await pushAuthorization(bank);
    const agent = new Agent({ connect: { ca: tf.serverCa } });
    const authorize = await fetch(pushed.authorizationUrl, { redirect: 'manual', dispatcher: agent });
    const dashboard = await fetch(`${server.issuer}/dashboard`, { dispatcher: agent });
    const cookies = [...authorize.headers.getSetCookie(), ...dashboard.headers.getSetCookie()];
    expect(cookies.length).toBeGreaterThan(0);
    for (const cookie of cookies) {
      expect(cookie, cookie.split('=')[0]).toMatch(/;\s*secure/i);
      expect(cookie, cookie.split('=')[0]).toMatch(/;\s*httponly/i);
      expect(cookie, cookie.split('=')[0]).toMatch(/;\s*samesite=(lax|strict)/i);
    }
  });

  it('gives a new dashboard session id at every sign-in, and the old one stops working', async () => {
    const browser = new HttpBrowser(server.issuer, tf.serverCa);
    const signIn = async () => {
      const page = await browser.navigate('/dashboard');
      const answer = await browser.request('/dashboard/sign-in', { method: 'POST', form: { csrf: hiddenField(page.html, 'csrf'), email: SME.email, password: SME.password } });
      expect(answer.status).toBe(303);
      return answer.headers.getSetCookie().find((c) => c.startsWith('perseus_sme='))!;
    };
    const first = await signIn();
    const dashboard = await browser.navigate('/dashboard');
    expect((await browser.request('/dashboard/sign-out', { method: 'POST', form: { csrf: hiddenField(dashboard.html, 'csrf') } })).status).toBe(303);
    const second = await signIn();
    expect(first).toBeTruthy();
    expect(second).toBeTruthy();
    expect(second.split(';')[0]).not.toBe(first.split(';')[0]);
    // The first session is gone: presenting its cookie alone shows the sign-in form.
    const old = first.split(';')[0];
    const agent = new Agent({ connect: { ca: tf.serverCa } });
    const res = await fetch(`${server.issuer}/dashboard`, { headers: { cookie: old }, dispatcher: agent });
    expect(await res.text()).toContain('Email address');
  });

  it('never redirects to a URI that did not come through an authenticated PAR', async () => {
    const browser = new HttpBrowser(server.issuer, tf.serverCa);
    const res = await browser.navigate(`/authorize?client_id=https://directory.example/a/web-bank&redirect_uri=${encodeURIComponent('https://evil.example/steal')}&response_type=code&scope=x`);
    expect(res.leftTo).toBeUndefined();
    expect(res.status).toBe(400);
  });
});
