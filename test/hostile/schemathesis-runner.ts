// Runs schemathesis (scripts/schemathesis/.venv, made by scripts/schemathesis/setup.sh) against a
// real server started here, with openapi/perseus-machine-endpoints.yaml. Used by
// test/hostile/schemathesis.test.ts (a small run in `npm test`) and scripts/schemathesis/run.ts
// (`npm run fuzz`, the full run).
//
// The server gets one client application whose URL is the description's example client_id,
// holding both roles and allowed to introspect, so generated requests reach past client
// authentication; rate limits are off. Before the run, real tokens replace the description's
// example tokens in a copy of it, so the examples phase also reaches the success answers.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as oauth from 'openid-client';

import { pushAuthorization, smeDecides } from '../support/flows.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { oauthClient } from '../support/oauth-client.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { TestTrustFramework } from '../support/trust-framework.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export const SPEC = path.join(ROOT, 'openapi/perseus-machine-endpoints.yaml');
export const SETUP = path.join(ROOT, 'scripts/schemathesis/setup.sh');
export const ST = path.join(ROOT, 'scripts/schemathesis/.venv/bin/st');
export const SKIP_SCHEMATHESIS = process.env.PERSEUS_SKIP_SCHEMATHESIS === '1';

/** The description's example values, replaced by live ones in the copy schemathesis reads. */
const EXAMPLE = {
  clientId: 'https://directory.example/a/green-loans',
  refreshToken: 'Ij9yFq0WvU3a6m1tEXAMPLErefreshTOKENxwL8sZpQ2d',
  revokeToken: 'Ij9yFq0WvU3a6m1tEXAMPLErevokeTOKENmZ4nB7cKtR0',
  accessToken: 'Wq1dEXAMPLEaccessTOKEN0pLkJ9s8XcVbN3mHgFdSaQ',
  code: 'SplxlOBeZQQYbYS6WxSbIA',
  codeVerifier: 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk',
};

export const CHECKS = ['not_a_server_error', 'status_code_conformance', 'response_schema_conformance', 'content_type_conformance'];

export interface FuzzOptions {
  /** schemathesis --max-examples: generated cases per operation and phase. */
  maxExamples: number;
  workers?: number;
  seed?: number;
  /** Where the JUnit report goes (default: a temporary directory, removed afterwards). */
  reportDir?: string;
  /** Each line schemathesis prints. */
  onOutput?: (text: string) => void;
}

export interface FuzzResult {
  exitCode: number;
  /** Test cases schemathesis generated and sent ("Test cases: N generated"). */
  generated: number;
  passed: number;
  /** Distinct failures schemathesis reported (0 on success). */
  failed: number;
  /** API operations tested. */
  operations: string;
  /** The CLI's closing summary (from "SUMMARY" on). */
  summary: string;
  output: string;
  seed?: number;
}

/** Runs scripts/schemathesis/setup.sh (idempotent; pip from PyPI) when the venv is missing. */
export function ensureSchemathesis(): void {
  if (existsSync(ST)) return;
  const result = spawnSync('bash', [SETUP], { encoding: 'utf8', timeout: 180_000 });
  if (result.status !== 0) throw new Error(`bash ${SETUP} failed (${result.status ?? result.error?.message}):\n${result.stdout}\n${result.stderr}`);
}

export function requireSchemathesis(): void {
  if (!existsSync(ST)) {
    throw new Error(`schemathesis is not installed: ${ST} does not exist.\nCreate it with:  bash ${path.relative(process.cwd(), SETUP)}\n(or set PERSEUS_SKIP_SCHEMATHESIS=1 to skip the schemathesis run)`);
  }
}

const SME_A = { email: 'fuzz-a@bakery.example', password: 'a long fuzzing password', organisation: 'Fuzz Bakery A Ltd' };
const SME_B = { email: 'fuzz-b@bakery.example', password: 'a long fuzzing password', organisation: 'Fuzz Bakery B Ltd' };

async function grant(server: TestServer, tf: TestTrustFramework, client: Awaited<ReturnType<typeof oauthClient>>, sme: typeof SME_A, redeem = true) {
  const pushed = await pushAuthorization(client);
  const callback = await smeDecides(new HttpBrowser(server.issuer, tf.serverCa), pushed.authorizationUrl, sme);
  if (!redeem) return { code: callback.searchParams.get('code')!, codeVerifier: pushed.codeVerifier };
  const tokens = await oauth.authorizationCodeGrant(client.config, callback, { pkceCodeVerifier: pushed.codeVerifier, expectedState: pushed.state });
  return { accessToken: tokens.access_token, refreshToken: String(tokens.refresh_token) };
}

/** Starts a server, runs schemathesis against its mTLS origin, stops the server. */
export async function runSchemathesis(options: FuzzOptions): Promise<FuzzResult> {
  requireSchemathesis();
  const tf = await TestTrustFramework.create();
  const work = mkdtempSync(path.join(os.tmpdir(), 'perseus-schemathesis-'));
  const member = await tf.member(EXAMPLE.clientId, ['financial-service-provider', 'carbon-accounting-provider'], 'Green Loans Bank plc');
  const server = await startTestServer(tf, {
    RESOURCE_SERVERS: member.applicationUrl, RATE_LIMIT_CLIENT: 'off', RATE_LIMIT_SIGN_IN_IP: 'off', RATE_LIMIT_SIGN_IN_ACCOUNT: 'off',
  });
  try {
    await server.smeAccounts.addSme({ ...SME_A, meters: ['2000000000017:SW1A'] });
    await server.smeAccounts.addSme({ ...SME_B, meters: ['2000000000025:SW1A'] });
    const client = await oauthClient(server.issuer, member, tf.serverCa);
    const a = await grant(server, tf, client, SME_A) as { accessToken: string; refreshToken: string };
    const b = await grant(server, tf, client, SME_B) as { refreshToken: string };
    const code = await grant(server, tf, client, SME_A, false) as { code: string; codeVerifier: string };
    await client.agent.close();

    // The one client the server knows: positive cases send its client_id (negative ones break it).
    const spec = readFileSync(SPEC, 'utf8')
      .replace(`      example: '${EXAMPLE.clientId}'`, `      example: '${EXAMPLE.clientId}'\n      const: '${EXAMPLE.clientId}'`)
      .replaceAll(EXAMPLE.refreshToken, a.refreshToken).replaceAll(EXAMPLE.accessToken, a.accessToken)
      .replaceAll(EXAMPLE.revokeToken, b.refreshToken).replaceAll(EXAMPLE.code, code.code).replaceAll(EXAMPLE.codeVerifier, code.codeVerifier);
    const files = {
      spec: path.join(work, 'perseus-machine-endpoints.yaml'), cert: path.join(work, 'client-bundle.pem'),
      key: path.join(work, 'client.key.pem'), ca: path.join(work, 'server-ca.pem'),
    };
    writeFileSync(files.spec, spec);
    writeFileSync(files.cert, member.cert);
    writeFileSync(files.key, member.key, { mode: 0o600 });
    writeFileSync(files.ca, tf.serverCa);
    const reportDir = options.reportDir ?? path.join(work, 'report');
    const args = [
      'run', files.spec, '--url', server.mtlsOrigin,
      '--checks', CHECKS.join(','),
      '--max-examples', String(options.maxExamples),
      '--workers', String(options.workers ?? 2),
      '--request-cert', files.cert, '--request-cert-key', files.key, '--tls-verify', files.ca,
      '--request-timeout', '15',
      '--continue-on-failure',
      '--suppress-health-check', 'all',
      '--generation-database', 'none',
      '--report', process.env.PERSEUS_FUZZ_REPORTS ?? 'junit', '--report-dir', reportDir,
      '--no-color',
      ...(options.seed !== undefined ? ['--seed', String(options.seed)] : []),
    ];
    const { exitCode, output } = await new Promise<{ exitCode: number; output: string }>((resolve, reject) => {
      const child = spawn(ST, args, { cwd: work, env: { ...process.env, NO_COLOR: '1', COLUMNS: '160', SCHEMATHESIS_TELEMETRY: 'false' } });
      let text = '';
      const take = (data: Buffer) => { const s = data.toString(); text += s; options.onOutput?.(s); };
      child.stdout.on('data', take);
      child.stderr.on('data', take);
      child.once('error', reject);
      child.once('close', (status) => resolve({ exitCode: status ?? 1, output: text }));
    });
    // The summary's "Test cases:" entry, on the next line: "227 generated, 227 passed", or with
    // failures "267 generated, 1 found 2 unique failures".
    const summaryAt = output.lastIndexOf('SUMMARY');
    const summary = summaryAt >= 0 ? output.slice(summaryAt) : output;
    const cases = /Test cases:\s*([^\n]*)/.exec(summary)?.[1] ?? '';
    const count = (word: string) => Number(new RegExp(`(\\d+) ${word}`).exec(cases)?.[1] ?? 0);
    return {
      exitCode,
      generated: count('generated'),
      passed: count('passed'),
      failed: count('failed') || Number(/(\d+) unique failures?/.exec(cases)?.[1] ?? 0),
      operations: /Tested:\s*(\d+)/.exec(summary)?.[1] ?? '',
      summary: summaryAt >= 0 ? output.slice(summaryAt) : output.slice(-3000),
      output,
      seed: options.seed ?? (Number(/--seed[= ](\d+)/.exec(output)?.[1]) || undefined),
    };
  } finally {
    await server.close();
    if (!options.reportDir) rmSync(work, { recursive: true, force: true });
  }
}
