import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

import * as oauth from 'openid-client';
import { chromium } from 'playwright-core';
import { Agent, fetch as undiciFetch } from 'undici';

import { openSqliteDatabase } from './adapters/sqlite-database.ts';
import { ensureDevTrustFramework } from './config/dev-setup.ts';
import { loadConfig } from './config/environment.ts';
import { silentSink } from './http/request-log.ts';
import { initDevPki, issueDevClientCertificate, roleUrl } from './pki/dev-trust-framework.ts';
import { recordApplication } from './pki/directory-file.ts';
import { ClientCertificateTrust } from './pki/client-certificate.ts';
import { initDevSigning, loadDevSigner, devSigningPaths } from './provenance/dev-signing.ts';
import { ib1ProvenanceHook } from './provenance/reference-api-hook.ts';
import { ProvenanceVerifier } from './provenance/verify.ts';
import { consumptionApi } from './reference-apis/consumption-api.ts';
import { emissionsApi, storeConsumptionSource } from './reference-apis/emissions-api.ts';
import { SqliteIntensityStore } from './reference-apis/carbon-intensity.ts';
import { generateSample, loadSample } from './reference-apis/intensity-sample.ts';
import { SqliteReadingStore } from './reference-apis/readings-store.ts';
import { synthesiseReadings } from './reference-apis/synthetic-readings.ts';
import { permissionGuard } from './resource-server/guard.ts';
import { listenResourceServer } from './resource-server/listener.ts';
import { startServer } from './server.ts';

/**
 * `npm run demo`: the whole Perseus journey on this machine, nothing from the internet.
 * A carbon-accounting provider runs this authorization server and its emissions API (and the
 * reference consumption API beside it); a bank walks the journey: PAR, the SME's sign-in and
 * consent in headless Chromium, the token exchange, the emissions report, and its provenance
 * verified against the signing CA. Readings and grid intensity are synthetic and say so.
 */
const LICENSE = 'https://registry.core.trust.ib1.org/scheme/perseus/license/emissions-cap-fsp/2026-03-12';
const SME = { email: 'owner@riverside-bakery.example', password: 'demo password for the bakery', organisation: 'Riverside Bakery Ltd', meter: '1012345678901', outcode: 'SW1A' };
const say = (text: string) => console.log(`\n▸ ${text}`);

async function main() {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'perseus-demo-'));
  const pkiDir = path.join(dataDir, 'pki');
  const env = { DATA_DIR: dataDir, ISSUER: 'https://localhost:18443', MTLS_ORIGIN: 'https://localhost:18444', OPERATOR_NAME: 'Demo Carbon Accounting Ltd', OPERATOR_APPLICATION_URL: 'https://directory.example/a/demo-cap' };
  let config = loadConfig(env);
  await ensureDevTrustFramework(config);
  config = loadConfig({ ...env, RESOURCE_SERVERS: config.operatorApplicationUrl });
  await initDevPki(pkiDir, { serverHostnames: ['localhost'] });
  const pem = (file: string) => readFileSync(path.join(pkiDir, file), 'utf8');

  say('A bank joins the trust framework: member certificate with the financial-service-provider role');
  const bankUrl = 'https://directory.example/a/green-loans';
  const bankFiles = await issueDevClientCertificate(pkiDir, { applicationUrl: bankUrl, roles: [roleUrl('financial-service-provider')], organisation: 'Example Bank plc', outDir: path.join(dataDir, 'bank') });
  recordApplication(config.directoryFile, { url: bankUrl, id: bankUrl, title: 'Green Loans', organisation: 'Example Bank plc', roles: [roleUrl('financial-service-provider')] });
  const bankCert = { cert: readFileSync(bankFiles.bundlePath, 'utf8'), key: readFileSync(bankFiles.keyPath, 'utf8') };

  say('The carbon-accounting provider starts its authorization server and its APIs');
  const server = await startServer(config, { log: silentSink });
  await server.smeAccounts.addSme({ email: SME.email, password: SME.password, organisation: SME.organisation, meters: [`${SME.meter}:${SME.outcode}`] });
  const db = openSqliteDatabase(path.join(dataDir, 'reference-apis.sqlite'));
  const readings = new SqliteReadingStore(db);
  const intensity = new SqliteIntensityStore(db);
  const now = new Date();
  const from = new Date(Date.UTC(now.getUTCFullYear() - 1, now.getUTCMonth() - 1, 1));
  await readings.put(SME.meter, 'import', synthesiseReadings({ from, months: 14, profile: 'bakery', fuel: 'electricity', seed: 7 }));
  await loadSample(intensity, generateSample(from, new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1))));
  console.log(`  synthetic half-hourly readings and SYNTHETIC regional intensity loaded for meter ${SME.meter} (${SME.outcode})`);
  const signingDir = path.join(pkiDir, 'signing');
  await initDevSigning(signingDir, { applicationUrl: config.operatorApplicationUrl, organisation: config.operatorName, roles: ['carbon-accounting-provider'] });
  const trust = new ClientCertificateTrust({ rootsPem: pem('client-ca.pem'), intermediatesPem: pem('client-issuer.pem') });
  const guard = (licenses: string[]) => permissionGuard({
    trust, licenses, cacheSeconds: 10,
    introspection: { url: `${config.mtlsOrigin}/introspect`, cert: pem('operator/client-bundle.pem'), key: pem('operator/client.key.pem'), ca: pem('server-ca.pem') },
  });
  const provenance = ib1ProvenanceHook({ signer: loadDevSigner(signingDir), origin: config.operatorApplicationUrl });
  const tls = { cert: pem('server.pem'), key: pem('server.key.pem'), clientCa: pem('client-ca.pem') + pem('client-issuer.pem') };
  const emissionsGuard = guard([LICENSE]);
  const emissions = await listenResourceServer(emissionsApi({ guard: emissionsGuard, consumption: storeConsumptionSource(readings), intensity, provenance, origin: config.operatorApplicationUrl }), tls);
  const consumptionGuard = guard(['https://registry.core.trust.ib1.org/scheme/perseus/license/energy-consumption-edp-cap/2026-03-12']);
  const consumption = await listenResourceServer(consumptionApi({ guard: consumptionGuard, readings, provenance, origin: config.operatorApplicationUrl }), tls);
  console.log(`  authorization server ${config.issuer} (mTLS ${config.mtlsOrigin}); emissions API ${emissions.url}; consumption API ${consumption.url}`);

  // The bank's own callback page, served with the dev server certificate.
  const callbacks: URL[] = [];
  const bankSite = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    callbacks.push(new URL(req.url ?? '/', 'https://localhost'));
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>Example Bank</title><p>Thank you. You can close this window.</p>');
  });
  await new Promise<void>((resolve) => bankSite.listen(0, '127.0.0.1', resolve));
  const redirectUri = `https://localhost:${(bankSite.address() as AddressInfo).port}/perseus/callback`;

  say('The bank discovers the server and pushes its authorization request (PAR, PKCE, mTLS)');
  const agent = new Agent({ connect: { ...bankCert, ca: pem('server-ca.pem') } });
  const customFetch = ((url: string, options: Record<string, unknown>) => undiciFetch(url, { ...options, dispatcher: agent } as never)) as unknown as oauth.CustomFetch;
  const client = await oauth.discovery(new URL(config.issuer), bankUrl, { use_mtls_endpoint_aliases: true }, oauth.TlsClientAuth(), { algorithm: 'oauth2', [oauth.customFetch]: customFetch });
  client[oauth.customFetch] = customFetch;
  const verifier = oauth.randomPKCECodeVerifier();
  const state = oauth.randomState();
  const authorizationUrl = await oauth.buildAuthorizationUrlWithPAR(client, {
    redirect_uri: redirectUri, scope: LICENSE, code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state,
  });

  say('The SME opens the link in a browser, signs in, reads the permission text and allows');
  if (!existsSync('/usr/bin/chromium')) throw new Error('no Chromium at /usr/bin/chromium: run scripts/install-browser.sh as root');
  const spki = createHash('sha256').update(new X509Certificate(tls.cert).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', `--ignore-certificate-errors-spki-list=${spki}`] });
  try {
    const page = await browser.newPage();
    await page.goto(authorizationUrl.href);
    await page.getByLabel('Email address').fill(SME.email);
    await page.getByLabel('Password').fill(SME.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    console.log(`  consent page: ${(await page.locator('dl.summary').innerText()).replace(/\n/g, ' | ')}`);
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL((url) => url.pathname === '/perseus/callback');
  } finally {
    await browser.close();
  }
  const callback = new URL(`${redirectUri}${callbacks.find((c) => c.pathname === '/perseus/callback')!.search}`);

  say('The bank exchanges the code for tokens and reads the permission record');
  const tokens = await oauth.authorizationCodeGrant(client, callback, { pkceCodeVerifier: verifier, expectedState: state });
  const permission = await (await undiciFetch(`${config.mtlsOrigin}/permission`, { method: 'POST', body: new URLSearchParams({ token: tokens.refresh_token! }), dispatcher: agent })).json();
  console.log(JSON.stringify(permission, null, 2).replace(/^/gm, '  '));

  say('The bank asks for the emissions report (the last 12 complete months)');
  let report: Record<string, unknown> | undefined;
  for (let attempt = 0; attempt < 10 && !report; attempt++) {
    const res = await undiciFetch(`${emissions.url}/emissions`, { headers: { authorization: `Bearer ${tokens.access_token}` }, dispatcher: agent });
    if (res.status === 200) report = await res.json() as Record<string, unknown>;
    else await new Promise((r) => setTimeout(r, 500));
  }
  if (!report) throw new Error('the emissions report was not ready');
  for (const row of report.data as Array<{ type: string; from: string; emissions: { value: number; unitCode: string } }>) {
    console.log(`  ${row.from.slice(0, 7)}  ${row.type.padEnd(11)} ${row.emissions.value.toFixed(1).padStart(8)} ${row.emissions.unitCode}`);
  }

  say('The bank checks the provenance record against the signing CA');
  const checked = new ProvenanceVerifier({ signingRootsPem: readFileSync(devSigningPaths(signingDir).signingCa, 'utf8') }).verify(report.provenance as never);
  for (const step of checked.steps as Array<Record<string, unknown>>) {
    const signer = (step._signature as { signed?: { application?: string; name?: string } } | undefined)?.signed;
    console.log(`  ✓ ${String(step.type).padEnd(8)} signed by ${signer?.application ?? signer?.name ?? '?'}`);
  }

  await Promise.all([emissions.close(), consumption.close(), server.close()]);
  emissionsGuard.close();
  consumptionGuard.close();
  bankSite.close();
  agent.close();
  db.close();
  console.log(`\nDone. Everything ran on this machine; files are in ${dataDir}`);
}

main().catch((err: Error) => {
  console.error(`demo failed: ${err.message}`);
  process.exit(1);
});
