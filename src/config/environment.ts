import path from 'node:path';

import { TrustedProxies } from '../http/trusted-proxies.ts';
import { crlSourcesFromConfig } from '../pki/crl.ts';

/**
 * The server's configuration, read once from environment variables at start-up.
 *
 * Every key is documented here beside its default (the README's configuration table repeats
 * this list). A bad value stops start-up with a one-line message that names the variable.
 */
export type OperatorRole = 'energy-data-provider' | 'carbon-accounting-provider';

export interface ServerConfig {
  /** ISSUER: public https origin for browsers and metadata. Default https://localhost:8443. */
  issuer: string;
  /** MTLS_ORIGIN: https origin of the mTLS listener (PAR, token, revocation, introspection,
   * permission endpoint). Default https://localhost:8444. */
  mtlsOrigin: string;
  /** PUBLIC_PORT: port the public listener binds. Default: the port of ISSUER, else 8443. */
  publicPort: number;
  /** MTLS_PORT: port the mTLS listener binds. Default: the port of MTLS_ORIGIN, else 8444. */
  mtlsPort: number;
  /** LISTEN_HOST: address both listeners bind. Default 127.0.0.1 (set 0.0.0.0 or :: to serve a network). */
  listenHost: string;
  /** WORKERS: server processes sharing the listeners (node:cluster). Default 1. */
  workers: number;
  /** DATA_DIR: where the embedded store, keys and the dev trust framework live. Default ./data. */
  dataDir: string;
  /** RESOURCE_SERVERS: comma-separated application URLs (certificate SAN URIs) allowed to
   * introspect tokens. Default: none (introspection refused for everyone). */
  resourceServers: string[];
  /** TLS_CERT_FILE / TLS_KEY_FILE: server certificate (PEM chain) and key for both listeners.
   * Default DATA_DIR/pki/server.pem and DATA_DIR/pki/server.key.pem (made by `pki init`). */
  tlsCertFile: string;
  tlsKeyFile: string;
  /** CLIENT_CA_FILE: PEM bundle of trusted IB1 Client CA roots. Default DATA_DIR/pki/client-ca.pem. */
  clientCaFile: string;
  /** CLIENT_ISSUERS_FILE: PEM bundle of known Client Issuer intermediates (clients normally send
   * theirs). Default DATA_DIR/pki/client-issuer.pem when it exists. */
  clientIssuersFile: string;
  /** DIRECTORY_FILE: local directory of applications (offline stand-in for IB1's Directory).
   * Default DATA_DIR/directory.json. */
  directoryFile: string;
  /** OPERATOR_NAME: the organisation that runs this server, shown to SMEs. */
  operatorName: string;
  /** OPERATOR_ROLE: energy-data-provider or carbon-accounting-provider. Decides which licenses
   * this server grants by default. Default carbon-accounting-provider. */
  operatorRole: OperatorRole;
  /** LICENSES: comma-separated license URLs (or labels) this server grants. Default: every
   * Perseus license whose data flows from OPERATOR_ROLE. */
  licenses: string[] | undefined;
  /** LICENSE_ROLES: the role a client must hold per license, e.g.
   * `energy-consumption-emissions-edp-cap-fsp=carbon-accounting-provider`. Default: each license's
   * recipient role (the second role in its label). */
  licenseRoles: Record<string, string>;
  /** EDP_NAME, CAP_NAME: names for the [EDP] and [CAP] placeholders of the permission text when
   * the operator is not that party. Default: OPERATOR_NAME for the operator's own role. */
  edpName: string;
  capName: string;
  /** EDP_PRIVACY_POLICY_URL: link for [EDP privacy policy link]. */
  edpPrivacyPolicyUrl: string;
  /** ACCESS_TOKEN_TTL: access token lifetime in seconds, at most 3600 (scheme rule). Default 600. */
  accessTokenTtl: number;
  /** DATA_PERIOD_MONTHS: how many whole months back a data provider may serve, `12` for all
   * licenses or per license label, e.g. `emissions-cap-fsp=24,12`. Default 12. */
  dataPeriodMonths: { default: number; byLicense: Record<string, number> };
  /** TRUST_FRAMEWORK_URL: the `ib1:message` value of messages to clients.
   * Default https://registry.core.trust.ib1.org/trust-framework. */
  trustFrameworkUrl: string;
  /** OPERATOR_APPLICATION_URL: this server's own Directory application URL (its client
   * certificate's SAN, used to deliver messages). Default ISSUER + /application. */
  operatorApplicationUrl: string;
  /** OPERATOR_CERT_FILE / OPERATOR_KEY_FILE: the operator's member certificate (leaf + issuer)
   * and key for mTLS calls to clients. Default DATA_DIR/pki/operator/client-bundle.pem and
   * client.key.pem (made by the dev trust framework on first start). */
  operatorCertFile: string;
  operatorKeyFile: string;
  /** OUTBOUND_CA_FILE: extra CA certificates to trust when delivering messages (dev/test).
   * Default: none (the system's roots). */
  outboundCaFile: string | undefined;
  /** OUTBOX_GIVE_UP_AFTER: seconds after which an undelivered message is given up. Default 604800 (7 days). */
  outboxGiveUpAfter: number;
  /** CRL_URLS: comma-separated http(s) URLs of the CRLs of the Client CA and Client Issuer(s).
   * Default: none. With CRL_URLS or CRL_FILES set, revoked or unverifiable certificates are refused. */
  crlUrls: string[];
  /** CRL_FILES: comma-separated CRL files (DER or PEM, a PEM file may hold several CRLs). Default: none. */
  crlFiles: string[];
  /** CRL_CA_FILE: CA certificate(s) to trust for https CRL URLs instead of the system roots (dev/test). */
  crlCaFile: string | undefined;
  /** CRL_INTERMEDIATES: `require` (a current root CRL is needed for the Client Issuer too) or
   * `if-listed` (checked only when a CRL of the root was loaded). Default require. */
  crlIntermediates: 'require' | 'if-listed';
  /** CRL_START_TIMEOUT: seconds start-up waits for every CRL source before failing. Default 30. */
  crlStartTimeout: number;
  /** TRUSTED_PROXIES: comma-separated addresses/CIDRs of TLS-terminating proxies whose forwarding
   * and client-certificate headers are believed. Default: none. */
  trustedProxies: string[];
  /** CLIENT_CERT_HEADER: header in which a trusted proxy forwards the client certificate (URL-encoded
   * PEM), e.g. x-amzn-mtls-clientcert-leaf (AWS ALB) or x-ssl-client-escaped-cert (nginx). Default: none. */
  clientCertHeader: string | undefined;
  /** CLIENT_CERT_CHAIN_HEADER: optional header with the intermediates, e.g. x-amzn-mtls-clientcert. */
  clientCertChainHeader: string | undefined;
  /** STORAGE: `sqlite` (embedded, DATA_DIR/perseus.sqlite) or `mongo` (MongoDB for records and
   * durable models, Redis for sessions and short-lived artefacts). Default sqlite. */
  storage: 'sqlite' | 'mongo';
  /** MONGODB_URI: required with STORAGE=mongo, e.g. mongodb://db1,db2,db3/perseus?replicaSet=rs0. */
  mongodbUri: string | undefined;
  /** REDIS_URL: required with STORAGE=mongo, e.g. redis://redis:6379/0 (rediss:// for TLS). */
  redisUrl: string | undefined;
  /** STORE_TIMEOUT_MS: how long start-up and each store operation wait for a store. Default 3000. */
  storeTimeoutMs: number;
  /** DIRECTORY_URL: IB1 Directory base, e.g. https://directory.core.sandbox.trust.ib1.org.
   * Default: none (names and message addresses from DIRECTORY_FILE only). */
  directoryUrl: string | undefined;
  /** REGISTRY_URL: IB1 Registry base (or a mirror) to refresh licenses from at start-up.
   * Default: none (the bundled Registry snapshot in config/registry). */
  registryUrl: string | undefined;
  /** IB1_CA_FILE: extra CA certificates (PEM) to trust for the Directory and Registry. */
  ib1CaFile: string | undefined;
}

export class ConfigError extends Error {
  readonly code = 'invalid_configuration';
  readonly variable: string;
  constructor(variable: string, problem: string) {
    super(`${variable}: ${problem}`);
    this.variable = variable;
  }
}

type Env = Record<string, string | undefined>;

function httpsOrigin(env: Env, name: string, fallback: string): URL {
  const raw = env[name] ?? fallback;
  const url = URL.parse(raw);
  if (!url || url.protocol !== 'https:') {
    throw new ConfigError(name, `must be an https origin such as ${fallback}, got ${JSON.stringify(raw)}`);
  }
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    throw new ConfigError(name, `must be an origin without path, query or credentials, got ${JSON.stringify(raw)}`);
  }
  return url;
}

function port(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) {
    throw new ConfigError(name, `must be a TCP port number (0-65535), got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

function defaultPort(url: URL, fallback: number): number {
  return url.port ? Number(url.port) : fallback;
}

function applicationUrls(env: Env, name: string): string[] {
  const raw = env[name];
  if (!raw) return [];
  return raw.split(',').map((s) => s.trim()).filter(Boolean).map((value) => {
    const url = URL.parse(value);
    // Compared as exact strings with certificate URLs later: accept only what parses back unchanged.
    if (!url || url.protocol !== 'https:' || !url.host || (url.href !== value && url.href !== `${value}/`)) {
      throw new ConfigError(name, `every entry must be an https application URL, got ${JSON.stringify(value)}`);
    }
    return value;
  });
}

function wholeNumber(env: Env, name: string, fallback: number, max: number, unit: string): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
    throw new ConfigError(name, `must be a whole number of ${unit} from 1 to ${max}, got ${JSON.stringify(raw)}`);
  }
  return Number(raw);
}

const seconds = (env: Env, name: string, fallback: number, max: number) => wholeNumber(env, name, fallback, max, 'seconds');

function httpsUrl(env: Env, name: string, fallback: string): string {
  const raw = env[name] || fallback;
  if (URL.parse(raw)?.protocol !== 'https:') throw new ConfigError(name, `must be an https URL, got ${JSON.stringify(raw)}`);
  return raw;
}

const ROLE_LABELS = ['energy-data-provider', 'carbon-accounting-provider', 'financial-service-provider'];

function licenseRoles(raw: string | undefined): Record<string, string> {
  const roles: Record<string, string> = {};
  for (const entry of (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z0-9-]+)=([a-z-]+)$/.exec(entry);
    if (!m || !ROLE_LABELS.includes(m[2])) {
      throw new ConfigError('LICENSE_ROLES', `entries are license-label=role with role one of ${ROLE_LABELS.join(', ')}, got ${JSON.stringify(entry)}`);
    }
    roles[m[1]] = m[2];
  }
  return roles;
}

/** An optional https base URL of an IB1 service: no query, no fragment. */
function serviceBase(env: Env, name: string): string | undefined {
  const raw = env[name];
  if (!raw) return undefined;
  const url = URL.parse(raw);
  if (!url || url.protocol !== 'https:' || url.search || url.hash || url.username || url.password) {
    throw new ConfigError(name, `must be an https URL without query or fragment, got ${JSON.stringify(raw)}`);
  }
  return raw.replace(/\/+$/, '');
}

function dataPeriodMonths(raw: string | undefined): ServerConfig['dataPeriodMonths'] {
  const result = { default: 12, byLicense: {} as Record<string, number> };
  if (!raw) return result;
  for (const entry of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(?:([a-z0-9-]+)=)?(\d{1,3})$/.exec(entry);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 120) {
      throw new ConfigError('DATA_PERIOD_MONTHS', `entries are N or license-label=N with N from 1 to 120, got ${JSON.stringify(entry)}`);
    }
    if (m[1]) result.byLicense[m[1]] = Number(m[2]);
    else result.default = Number(m[2]);
  }
  return result;
}

function storage(env: Env): Pick<ServerConfig, 'storage' | 'mongodbUri' | 'redisUrl'> {
  const kind = env.STORAGE || 'sqlite';
  if (kind !== 'sqlite' && kind !== 'mongo') throw new ConfigError('STORAGE', `must be sqlite or mongo, got ${JSON.stringify(kind)}`);
  if (kind === 'sqlite') return { storage: 'sqlite', mongodbUri: undefined, redisUrl: undefined };
  const mongodbUri = env.MONGODB_URI;
  if (!mongodbUri || !/^mongodb(\+srv)?:\/\/[^\s]+$/.test(mongodbUri)) {
    throw new ConfigError('MONGODB_URI', 'must be a mongodb:// or mongodb+srv:// URI when STORAGE=mongo');
  }
  const redisUrl = env.REDIS_URL;
  if (!redisUrl || !/^rediss?:\/\/[^\s]+$/.test(redisUrl)) throw new ConfigError('REDIS_URL', 'must be a redis:// or rediss:// URL when STORAGE=mongo');
  return { storage: 'mongo', mongodbUri, redisUrl };
}

const OPERATOR_ROLES: readonly OperatorRole[] = ['energy-data-provider', 'carbon-accounting-provider'];

export function loadConfig(env: Env = process.env, cwd = process.cwd()): ServerConfig {
  const issuer = httpsOrigin(env, 'ISSUER', 'https://localhost:8443');
  const mtls = httpsOrigin(env, 'MTLS_ORIGIN', 'https://localhost:8444');
  if (issuer.origin === mtls.origin) {
    throw new ConfigError('MTLS_ORIGIN', 'must differ from ISSUER: browsers must never be asked for a client certificate');
  }
  const dataDir = path.resolve(cwd, env.DATA_DIR || './data');
  const pki = (file: string) => path.join(dataDir, 'pki', file);
  const fileVar = (name: string, fallback: string) => path.resolve(cwd, env[name] || fallback);

  const operatorRole = (env.OPERATOR_ROLE || 'carbon-accounting-provider') as OperatorRole;
  if (!OPERATOR_ROLES.includes(operatorRole)) {
    throw new ConfigError('OPERATOR_ROLE', `must be one of ${OPERATOR_ROLES.join(', ')}, got ${JSON.stringify(env.OPERATOR_ROLE)}`);
  }
  const operatorName = env.OPERATOR_NAME || 'Perseus Demo Operator';
  const listenHost = env.LISTEN_HOST || '127.0.0.1';
  const licenses = env.LICENSES ? env.LICENSES.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  if (licenses && licenses.length === 0) throw new ConfigError('LICENSES', 'lists no license');

  const edpPrivacyPolicyUrl = env.EDP_PRIVACY_POLICY_URL || '';
  if (edpPrivacyPolicyUrl && URL.parse(edpPrivacyPolicyUrl)?.protocol !== 'https:') {
    throw new ConfigError('EDP_PRIVACY_POLICY_URL', `must be an https URL, got ${JSON.stringify(edpPrivacyPolicyUrl)}`);
  }

  return {
    issuer: issuer.origin,
    mtlsOrigin: mtls.origin,
    publicPort: port(env, 'PUBLIC_PORT', defaultPort(issuer, 8443)),
    mtlsPort: port(env, 'MTLS_PORT', defaultPort(mtls, 8444)),
    listenHost,
    workers: wholeNumber(env, 'WORKERS', 1, 64, 'processes'),
    dataDir,
    resourceServers: applicationUrls(env, 'RESOURCE_SERVERS'),
    tlsCertFile: fileVar('TLS_CERT_FILE', pki('server.pem')),
    tlsKeyFile: fileVar('TLS_KEY_FILE', pki('server.key.pem')),
    clientCaFile: fileVar('CLIENT_CA_FILE', pki('client-ca.pem')),
    clientIssuersFile: fileVar('CLIENT_ISSUERS_FILE', pki('client-issuer.pem')),
    directoryFile: fileVar('DIRECTORY_FILE', path.join(dataDir, 'directory.json')),
    operatorName,
    operatorRole,
    licenses,
    licenseRoles: licenseRoles(env.LICENSE_ROLES),
    edpName: env.EDP_NAME || (operatorRole === 'energy-data-provider' ? operatorName : 'Demo Energy Data Provider'),
    capName: env.CAP_NAME || (operatorRole === 'carbon-accounting-provider' ? operatorName : 'Demo Carbon Accounting Provider'),
    edpPrivacyPolicyUrl,
    accessTokenTtl: seconds(env, 'ACCESS_TOKEN_TTL', 600, 3600),
    dataPeriodMonths: dataPeriodMonths(env.DATA_PERIOD_MONTHS),
    trustFrameworkUrl: httpsUrl(env, 'TRUST_FRAMEWORK_URL', 'https://registry.core.trust.ib1.org/trust-framework'),
    operatorApplicationUrl: httpsUrl(env, 'OPERATOR_APPLICATION_URL', `${issuer.origin}/application`),
    operatorCertFile: fileVar('OPERATOR_CERT_FILE', pki('operator/client-bundle.pem')),
    operatorKeyFile: fileVar('OPERATOR_KEY_FILE', pki('operator/client.key.pem')),
    outboundCaFile: env.OUTBOUND_CA_FILE ? path.resolve(cwd, env.OUTBOUND_CA_FILE) : undefined,
    outboxGiveUpAfter: seconds(env, 'OUTBOX_GIVE_UP_AFTER', 7 * 24 * 3600, 90 * 24 * 3600),
    ...revocationAndProxies(env, cwd),
    ...storage(env),
    storeTimeoutMs: wholeNumber(env, 'STORE_TIMEOUT_MS', 3000, 60_000, 'milliseconds'),
    directoryUrl: serviceBase(env, 'DIRECTORY_URL'),
    registryUrl: serviceBase(env, 'REGISTRY_URL'),
    ib1CaFile: env.IB1_CA_FILE ? path.resolve(cwd, env.IB1_CA_FILE) : undefined,
  };
}

const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/i;

function revocationAndProxies(env: Env, cwd: string) {
  let crlUrls: string[];
  try {
    crlUrls = crlSourcesFromConfig({ urls: env.CRL_URLS }).map((source) => (source.kind === 'url' ? source.url : ''));
  } catch (error) {
    throw new ConfigError('CRL_URLS', (error as Error).message.replace(/^CRL_URLS: /, ''));
  }
  const list = (raw: string | undefined) => (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const crlIntermediates = (env.CRL_INTERMEDIATES || 'require') as 'require' | 'if-listed';
  if (crlIntermediates !== 'require' && crlIntermediates !== 'if-listed') {
    throw new ConfigError('CRL_INTERMEDIATES', `must be require or if-listed, got ${JSON.stringify(env.CRL_INTERMEDIATES)}`);
  }
  const trustedProxies = list(env.TRUSTED_PROXIES);
  try {
    new TrustedProxies(trustedProxies);
  } catch (error) {
    throw new ConfigError('TRUSTED_PROXIES', (error as Error).message.replace(/^TRUSTED_PROXIES: /, ''));
  }
  const header = (name: string) => {
    const value = env[name]?.trim().toLowerCase() || undefined;
    if (value !== undefined && !HEADER_NAME.test(value)) throw new ConfigError(name, `must be an HTTP header name, got ${JSON.stringify(value)}`);
    return value;
  };
  const clientCertHeader = header('CLIENT_CERT_HEADER');
  const clientCertChainHeader = header('CLIENT_CERT_CHAIN_HEADER');
  if ((clientCertHeader || clientCertChainHeader) && trustedProxies.length === 0) {
    throw new ConfigError('CLIENT_CERT_HEADER', 'needs TRUSTED_PROXIES: the header is believed only from trusted proxies');
  }
  return {
    crlUrls,
    crlFiles: list(env.CRL_FILES).map((file) => path.resolve(cwd, file)),
    crlCaFile: env.CRL_CA_FILE ? path.resolve(cwd, env.CRL_CA_FILE) : undefined,
    crlIntermediates,
    crlStartTimeout: seconds(env, 'CRL_START_TIMEOUT', 30, 600),
    trustedProxies,
    clientCertHeader,
    clientCertChainHeader,
  };
}
