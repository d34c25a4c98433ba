import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * Refresh tokens are stored only as hashes, except for one purpose: when the SME or operator
 * withdraws a permission, the scheme's message to the client must name the revoked refresh token.
 * For that the token is kept sealed (AES-256-GCM under a server key), never in clear.
 */
export class TokenSeal {
  readonly #key: Buffer;
  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error('token seal key must be 32 bytes');
    this.#key = key;
  }

  seal(token: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    const body = Buffer.concat([cipher.update(token, 'utf8'), cipher.final()]);
    return [iv, cipher.getAuthTag(), body].map((b) => b.toString('base64url')).join('.');
  }

  open(sealed: string): string {
    const [iv, tag, body] = sealed.split('.').map((p) => Buffer.from(p, 'base64url'));
    const decipher = createDecipheriv('aes-256-gcm', this.#key, iv);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
  }
}

