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

const keysFile = (dataDir: string) => path.join(dataDir, 'keys.json');

function writeKeys(file: string, keys: KeysFile): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(keys, null, 2), { mode: 0o600 });
  renameSync(tmp, file);
}

/**
 * Key rotation without downtime, in the order the library needs. Each step changes the keys
 * file; every server process picks it up at its next (rolling) restart.
 * - Signing keys: `stage` publishes a new key in the JWKS without using it; `promote` makes it
 *   the one used (the old one stays published, so anything it signed still verifies); `retire`
 *   drops all but the key in use, once nothing signed by the others is still alive.
 * - Cookie keys: `rotateCookieKeys` puts a new key first (it signs; all still verify) and keeps
 *   the previous ones, so sessions and interactions in flight survive.
 */
export type KeyRotationStep = 'stage-signing' | 'promote-signing' | 'retire-signing' | 'rotate-cookies';

export async function rotateKeys(dataDir: string, step: KeyRotationStep, options: { keepCookieKeys?: number } = {}): Promise<{ signing: string[]; cookieKeys: number }> {
  await loadOrCreateKeys(dataDir);
  const file = keysFile(dataDir);
  const keys = JSON.parse(readFileSync(file, 'utf8')) as KeysFile;
  const signing = keys.jwks.keys;
  if (step === 'stage-signing') signing.push(await newSigningKey());
  else if (step === 'promote-signing') {
    if (signing.length < 2) throw new Error('no staged signing key to promote: run `keys stage-signing` first');
    signing.unshift(signing.pop()!);
  } else if (step === 'retire-signing') signing.splice(1);
  else keys.cookieKeys = [randomBytes(32).toString('base64url'), ...keys.cookieKeys].slice(0, Math.max(2, options.keepCookieKeys ?? 3));
  writeKeys(file, keys);
  return { signing: signing.map((k) => String(k.kid)), cookieKeys: keys.cookieKeys.length };
}

export async function loadOrCreateKeys(dataDir: string): Promise<ServerKeys> {
  const file = keysFile(dataDir);
  const write = (keys: KeysFile) => writeKeys(file, keys);
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
