// The local development trust framework: a private Client CA hierarchy shaped like IB1's
// (P-384 root -> P-256 issuer -> P-256 leaves) plus a separate CA for the server's TLS certificate.
// Called by `pki init` / `pki client` in the CLI.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createIntermediateCa, createRootCa, issueClientLeaf, issueServerLeaf, loadIssuer } from './certificate-authority.ts';
import { CertificateError } from './errors.ts';
import { isHttpsUrl } from './https-url.ts';

export const PERSEUS_SCHEME = 'https://registry.core.trust.ib1.org/scheme/perseus';

export const PERSEUS_ROLE_LABELS = ['energy-data-provider', 'carbon-accounting-provider', 'financial-service-provider'] as const;
export type PerseusRoleLabel = (typeof PERSEUS_ROLE_LABELS)[number];

/**
 * `financial-service-provider` -> `${PERSEUS_SCHEME}/role/financial-service-provider`; https URLs pass
 * through unchanged (roles of other schemes). Anything else is a typo worth failing loudly on.
 */
export function roleUrl(labelOrUrl: string): string {
  if (isHttpsUrl(labelOrUrl)) return labelOrUrl;
  if ((PERSEUS_ROLE_LABELS as readonly string[]).includes(labelOrUrl)) return `${PERSEUS_SCHEME}/role/${labelOrUrl}`;
  throw new CertificateError('unknown_role', `unknown role ${JSON.stringify(labelOrUrl)}; expected a role URL or one of ${PERSEUS_ROLE_LABELS.join(', ')}`);
}

export interface DevPkiPaths {
  dir: string;
  clientCa: string;
  clientCaKey: string;
  clientIssuer: string;
  clientIssuerKey: string;
  serverCa: string;
  serverCaKey: string;
  /** The server's TLS leaf certificate alone (clients trust serverCa). */
  server: string;
  serverKey: string;
}

export function devPkiPaths(pkiDir: string): DevPkiPaths {
  return {
    dir: pkiDir,
    clientCa: join(pkiDir, 'client-ca.pem'),
    clientCaKey: join(pkiDir, 'client-ca.key.pem'),
    clientIssuer: join(pkiDir, 'client-issuer.pem'),
    clientIssuerKey: join(pkiDir, 'client-issuer.key.pem'),
    serverCa: join(pkiDir, 'server-ca.pem'),
    serverCaKey: join(pkiDir, 'server-ca.key.pem'),
    server: join(pkiDir, 'server.pem'),
    serverKey: join(pkiDir, 'server.key.pem'),
  };
}

/** Private keys are readable by the owner only; chmod too because `mode` only applies when the file is created. */
function writePrivateKey(path: string, pem: string): void {
  writeFileSync(path, pem, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/**
 * Creates the dev PKI in pkiDir unless it already exists (then nothing is touched: existing keys may
 * already be trusted elsewhere). A partial PKI is an error rather than being silently completed or replaced.
 */
export async function initDevPki(
  pkiDir: string,
  options: { serverHostnames: string[] },
): Promise<{ created: boolean; paths: DevPkiPaths }> {
  const paths = devPkiPaths(pkiDir);
  const files = Object.entries(paths).filter(([name]) => name !== 'dir').map(([, path]) => path);
  const missing = files.filter((path) => !existsSync(path));
  if (missing.length === 0) return { created: false, paths };
  if (missing.length < files.length) {
    throw new CertificateError('pki_incomplete', `the dev PKI in ${pkiDir} is incomplete (missing ${missing.join(', ')}); remove it to recreate it`);
  }

  // Generate everything before writing anything, so a failure leaves no half-initialised directory.
  const clientCa = await createRootCa({ name: 'Perseus Dev Client CA', keyAlgorithm: 'P-384' });
  const clientIssuer = await createIntermediateCa(clientCa, { name: 'Perseus Dev Client Issuer', keyAlgorithm: 'P-256' });
  const serverCa = await createRootCa({ name: 'Perseus Dev Server CA', keyAlgorithm: 'P-256' });
  const dnsNames = [...new Set(['localhost', ...options.serverHostnames])];
  const server = await issueServerLeaf(serverCa, { dnsNames, ipAddresses: ['127.0.0.1', '::1'] });

  mkdirSync(pkiDir, { recursive: true });
  writeFileSync(paths.clientCa, clientCa.certificatePem);
  writePrivateKey(paths.clientCaKey, clientCa.keyPem);
  writeFileSync(paths.clientIssuer, clientIssuer.certificatePem);
  writePrivateKey(paths.clientIssuerKey, clientIssuer.keyPem);
  writeFileSync(paths.serverCa, serverCa.certificatePem);
  writePrivateKey(paths.serverCaKey, serverCa.keyPem);
  writeFileSync(paths.server, server.certificatePem);
  writePrivateKey(paths.serverKey, server.keyPem);
  return { created: true, paths };
}

export interface DevClientCertificateOptions {
  applicationUrl: string;
  /** Role labels (e.g. `financial-service-provider`) or role URLs. */
  roles: string[];
  organisation: string;
  /** The member's Directory URL; see defaultMemberUrl. */
  member?: string;
  outDir: string;
}

/**
 * Without IB1's Directory there is no real member URL, so by default the member is identified by the
 * application URL's origin: stable, unique per organisation in dev, and obviously not a Directory URL.
 */
function defaultMemberUrl(applicationUrl: string): string {
  return `${new URL(applicationUrl).origin}/`;
}

/** Issues a client certificate from the dev Client Issuer into outDir (client.pem, client.key.pem, client-bundle.pem). */
export async function issueDevClientCertificate(
  pkiDir: string,
  options: DevClientCertificateOptions,
): Promise<{ certificatePath: string; keyPath: string; bundlePath: string }> {
  if (!isHttpsUrl(options.applicationUrl)) {
    throw new CertificateError('invalid_argument', `application URL must be an https URL: ${options.applicationUrl}`);
  }
  const paths = devPkiPaths(pkiDir);
  if (!existsSync(paths.clientIssuer) || !existsSync(paths.clientIssuerKey)) {
    throw new CertificateError('pki_not_initialised', `no dev Client Issuer in ${pkiDir}; run \`pki init\` first`);
  }
  const issuer = await loadIssuer(readFileSync(paths.clientIssuer, 'utf8'), readFileSync(paths.clientIssuerKey, 'utf8'));
  const leaf = await issueClientLeaf(issuer, {
    applicationUrl: options.applicationUrl,
    organisation: options.organisation,
    roles: options.roles.map(roleUrl),
    member: options.member ?? defaultMemberUrl(options.applicationUrl),
  });

  mkdirSync(options.outDir, { recursive: true });
  const result = {
    certificatePath: join(options.outDir, 'client.pem'),
    keyPath: join(options.outDir, 'client.key.pem'),
    bundlePath: join(options.outDir, 'client-bundle.pem'),
  };
  writeFileSync(result.certificatePath, leaf.certificatePem);
  writePrivateKey(result.keyPath, leaf.keyPem);
  writeFileSync(result.bundlePath, leaf.bundlePem);
  return result;
}
