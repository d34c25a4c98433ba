/**
 * Password hashing cost on one core: scryptSync with the parameters the server stores in its
 * hashes (read from a real hashPassword() result), repeated for SCRYPT_SECONDS (default 3) on
 * this process's single thread. Prints (or sends over IPC) { hashesPerSecond, msPerHash, params }.
 */
import { randomBytes, scryptSync } from 'node:crypto';

import { hashPassword } from '../src/consent/passwords.ts';

export interface ScryptRate { hashesPerSecond: number; msPerHash: number; params: { N: number; r: number; p: number }; hashes: number }

export async function measureScrypt(seconds = 3): Promise<ScryptRate> {
  const [, n, r, p, , key] = (await hashPassword('a benchmark password')).split('$');
  const params = { N: Number(n), r: Number(r), p: Number(p) };
  const keylen = Buffer.from(key, 'base64url').length;
  const options = { ...params, maxmem: 128 * params.N * params.r * 2 };
  scryptSync('warm-up', randomBytes(16), keylen, options);
  let hashes = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    scryptSync('correct horse battery staple', randomBytes(16), keylen, options);
    hashes += 1;
  }
  const elapsed = (performance.now() - start) / 1000;
  return { hashesPerSecond: Math.round((hashes / elapsed) * 100) / 100, msPerHash: Math.round((elapsed / hashes) * 1e5) / 100, params, hashes };
}

if (import.meta.main) {
  const result = await measureScrypt(Number(process.env.SCRYPT_SECONDS ?? 3));
  if (process.send) process.send({ type: 'result', result }, () => process.exit(0));
  else console.log(JSON.stringify(result));
}
