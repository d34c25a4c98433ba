import { expect } from 'vitest';
import * as oauth from 'openid-client';

import { formAction, hiddenField, HttpBrowser, meterChoices } from './http-browser.ts';
import type { OAuthClient } from './oauth-client.ts';

export const LICENSE_EMISSIONS = 'https://registry.core.trust.ib1.org/scheme/perseus/license/emissions-cap-fsp/2026-03-12';
export const BANK_REDIRECT = 'https://bank.example/perseus/callback';

export interface PushedAuthorization {
  authorizationUrl: URL;
  codeVerifier: string;
  state: string;
  redirectUri: string;
}

/** The bank's first step: PKCE, then PAR over mTLS. */
export async function pushAuthorization(client: OAuthClient, params: Record<string, string> = {}): Promise<PushedAuthorization> {
  const codeVerifier = oauth.randomPKCECodeVerifier();
  const state = oauth.randomState();
  const redirectUri = params.redirect_uri ?? BANK_REDIRECT;
  const authorizationUrl = await oauth.buildAuthorizationUrlWithPAR(client.config, {
    redirect_uri: redirectUri,
    scope: LICENSE_EMISSIONS,
    code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    ...params,
  });
  return { authorizationUrl, codeVerifier, state, redirectUri };
}

/**
 * The SME's part, through the real pages: open the link, sign in, allow (all meters) or deny.
 * Returns the URL the browser was sent back to (the client's redirect URI with code or error).
 */
export async function smeDecides(browser: HttpBrowser, authorizationUrl: URL, sme: { email: string; password: string }, decision: 'allow' | 'deny' = 'allow'): Promise<URL> {
  const signIn = await browser.navigate(authorizationUrl.href);
  expect(signIn.status).toBe(200);
  expect(signIn.html).toContain('Email address');
  const consent = await browser.navigate(formAction(signIn.html, '/sign-in'), {
    form: { csrf: hiddenField(signIn.html, 'csrf'), email: sme.email, password: sme.password },
  });
  expect(consent.status).toBe(200);
  expect(consent.html).toContain('Allow');
  const done = await browser.navigate(formAction(consent.html, '/decision'), {
    form: { csrf: hiddenField(consent.html, 'csrf'), decision, meter: meterChoices(consent.html) },
  });
  if (!done.leftTo) throw new Error(`the browser was not sent back to the client (status ${done.status})`);
  return done.leftTo;
}
