import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { exportJWK, generateKeyPair, type JWK } from 'jose';

/**
 * The server's own secrets, made on first start and kept in DATA_DIR/keys.json (mode 0600):
 * - signing keys (JWKS, ES256) the library needs for any signed artefact it may produce;
 * - cookie keys, newest first (Koa signs with the first and accepts all, so a new key can be
 *   put in front and the old one kept until its cookies have expired);
 * - the secret that derives each client's opaque account identifier;
 * - the secret that derives CSRF tokens for the forms;
 * - the key that seals refresh tokens kept for withdrawal messages (AES-256-GCM).
 * A key missing from an older file is added on start, never replaced.
 */
export interface ServerKeys {
  jwks: { keys: JWK[] };
  cookieKeys: string[];
  accountSecret: Buffer;
  csrfSecret: Buffer;
  tokenSealKey: Buffer;
}

interface KeysFile {
  jwks: { keys: JWK[] };
  cookieKeys: string[];
  accountSecret: string;
  csrfSecret: string;
  tokenSealKey?: string;
}

async function newSigningKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg: 'ES256', use: 'sig', kid: randomBytes(8).toString('base64url') };
}

export async function loadOrCreateKeys(dataDir: string): Promise<ServerKeys> {
  const file = path.join(dataDir, 'keys.json');
  const write = (keys: KeysFile) => {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(keys, null, 2), { mode: 0o600 });
    renameSync(tmp, file);
  };
  const secret = () => randomBytes(32).toString('base64url');
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    write({ jwks: { keys: [await newSigningKey()] }, cookieKeys: [secret()], accountSecret: secret(), csrfSecret: secret(), tokenSealKey: secret() });
  }
  const stored = JSON.parse(readFileSync(file, 'utf8')) as KeysFile;
  if (!stored.tokenSealKey) {
    stored.tokenSealKey = secret();
    write(stored);
  }
  return {
    jwks: stored.jwks,
    cookieKeys: stored.cookieKeys,
    accountSecret: Buffer.from(stored.accountSecret, 'base64url'),
    csrfSecret: Buffer.from(stored.csrfSecret, 'base64url'),
    tokenSealKey: Buffer.from(stored.tokenSealKey, 'base64url'),
  };
}
