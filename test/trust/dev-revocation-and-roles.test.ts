import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterEach, describe, expect, it } from 'vitest';

import { BANK_REDIRECT, LICENSE_EMISSIONS } from '../support/flows.ts';
import { postForm } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework, type ClientCredentials } from '../support/trust-framework.ts';

const run = promisify(execFile);
let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});


describe('operator controls over who may connect', () => {
  it('refuses a client certificate revoked with `pki revoke` once the server serves the CRLs', async () => {
    const tf = await TestTrustFramework.create();
    const good = await tf.member('https://directory.example/a/kept', ['financial-service-provider'], 'Kept Bank plc');
    const bad = await tf.member('https://directory.example/a/revoked', ['financial-service-provider'], 'Revoked Bank plc');
    const certFile = path.join(tf.dataDir, 'revoked-client.pem');
    writeFileSync(certFile, bad.cert);
    const out = await run(process.execPath, ['--disable-warning=ExperimentalWarning', 'src/cli.ts', 'pki', 'revoke', '--certificate', certFile],
      { env: { ...process.env, DATA_DIR: tf.dataDir } });
    const crlFiles = /CRL_FILES=(\S+)/.exec(out.stdout)![1];
    server = await startTestServer(tf, { CRL_FILES: crlFiles });
    const serverCa = tf.serverCa;
    const refused = await postForm(`${server.mtlsOrigin}/par`, { client_id: bad.applicationUrl, response_type: 'code', redirect_uri: BANK_REDIRECT, scope: LICENSE_EMISSIONS, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }, bad, serverCa);
    expect(refused.status).toBe(401);
    expect(refused.json.error).toBe('invalid_client');
    expect(String(refused.json.error_description)).toMatch(/revoked/);
    const accepted = await postForm(`${server.mtlsOrigin}/par`, { client_id: good.applicationUrl, response_type: 'code', redirect_uri: BANK_REDIRECT, scope: LICENSE_EMISSIONS, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }, good, serverCa);
    expect(accepted.status).toBe(201);
  });

  it('requires the role LICENSE_ROLES names instead of the license default', async () => {
    const tf = await TestTrustFramework.create();
    const cap = await tf.member('https://directory.example/a/cap-app', ['carbon-accounting-provider'], 'CAP Ltd');
    const bank = await tf.member('https://directory.example/a/bank-app', ['financial-service-provider'], 'Bank plc');
    server = await startTestServer(tf, { LICENSE_ROLES: 'emissions-cap-fsp=carbon-accounting-provider' });
    const viaCa = (c: ClientCredentials) => postForm(`${server!.mtlsOrigin}/par`, { client_id: c.applicationUrl, response_type: 'code', redirect_uri: BANK_REDIRECT, scope: LICENSE_EMISSIONS, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }, c, tf.serverCa);
    expect((await viaCa(cap)).status).toBe(201);
    const refused = await viaCa(bank);
    expect(refused.status).toBe(403);
    expect(refused.json.error).toBe('unauthorized_client');
  });
});

