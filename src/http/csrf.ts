import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * CSRF tokens for the forms, derived from a server secret and what the form acts on (the
 * interaction uid, or the SME session). An attacker's page cannot compute one, and the
 * interaction cookies are SameSite=Lax besides.
 */
export class CsrfTokens {
  readonly #secret: Buffer;
  constructor(secret: Buffer) {
    this.#secret = secret;
  }

  tokenFor(purpose: string, binding: string): string {
    return createHmac('sha256', this.#secret).update(`${purpose}\n${binding}`).digest('base64url');
  }

  verify(purpose: string, binding: string, token: string): boolean {
    const expected = Buffer.from(this.tokenFor(purpose, binding));
    const given = Buffer.from(token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
