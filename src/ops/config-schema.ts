/**
 * ONE schema of every environment variable the server reads: name, type, default, meaning,
 * whether it carries a secret, and the parser that validates it and gives its configuration
 * value. From it come:
 *  - `validateEnvironment(env, cwd)`: EVERY problem at once (not just the first) and the values;
 *    with no problem, `values` is the ServerConfig (plus the operations settings) that
 *    loadConfig returns, key for key;
 *  - `effectiveConfiguration(env, cwd)`: what `npm run cli -- config check` prints, with the
 *    credentials of secret-bearing values masked;
 *  - `configTableMarkdown()`: the README's configuration table (scripts/generate-config-docs.ts).
 *
 * Names, defaults and messages are those of src/config/environment.ts (test/ops/config-schema.test.ts
 * compares the two on many environments, and fails when environment.ts reads a variable the schema
 * does not describe). This module imports only TYPES from environment.ts, so loadConfig can be
 * rebuilt on validateEnvironment without an import cycle.
 */
import path from 'node:path';

import type { OperatorRole, ServerConfig } from '../config/environment.ts';
import { TrustedProxies } from '../http/trusted-proxies.ts';
import { crlSourcesFromConfig } from '../pki/crl.ts';
import type { LevelWithSilent } from 'pino';

export type Env = Record<string, string | undefined>;

/** A rate limit setting: `limit` hits per `windowMs`; limit 0 is off. */
export interface RateLimitSetting {
  limit: number;
  windowMs: number;
}

/** Operations settings (metrics listener, logs, rate limits, shutdown). New: not in ServerConfig yet. */
export interface OpsConfig {
  /** METRICS_PORT: port of the internal metrics/health listener; undefined = not started. */
  metricsPort: number | undefined;
  /** METRICS_HOST: address it binds. */
  metricsHost: string;
  /** LOG_LEVEL. */
  logLevel: LevelWithSilent;
  /** RATE_LIMIT_SIGN_IN_IP: sign-in attempts per client IP. */
  rateLimitSignInIp: RateLimitSetting;
  /** RATE_LIMIT_SIGN_IN_ACCOUNT: sign-in attempts per account (email). */
  rateLimitSignInAccount: RateLimitSetting;
  /** RATE_LIMIT_CLIENT: PAR and token requests per client application. */
  rateLimitClient: RateLimitSetting;
  /** SHUTDOWN_TIMEOUT: seconds a shutdown waits for requests in flight. */
  shutdownTimeout: number;
}

export type FullConfig = ServerConfig & OpsConfig;

export interface ConfigIssue {
  variable: string;
  problem: string;
  /** `VARIABLE: problem`, one line: what ConfigError's message is. */
  message: string;
}

/** What a parser throws: the problem, naming another variable when a rule spans two. */
export class ConfigProblem extends Error {
  readonly variable: string | undefined;
  constructor(problem: string, variable?: string) {
    super(problem);
    this.variable = variable;
  }
}

export type SecretKind = 'url-credentials' | 'value';

interface ParseContext {
  env: Env;
  cwd: string;
  /** A value parsed before this variable (undefined when it failed or is unset). */
  get<K extends keyof FullConfig>(key: K): FullConfig[K] | undefined;
  /** Whether the variable of this key failed to parse. */
  failed(key: keyof FullConfig): boolean;
}

export interface ConfigVariable {
  name: string;
  /** The configuration key it fills. */
  key: keyof FullConfig;
  /** For people: origin, port, path, list of URLs, … */
  type: string;
  /** Markdown, for the README and `config check --help`. */
  default: string;
  /** Markdown. */
  description: string;
  /** `url-credentials`: the value may hold a user:password; `value`: the whole value is secret. */
  secret?: SecretKind;
  group: 'server' | 'operations';
  /** Shares the README row of that variable (the row's text is the first variable's `row`). */
  sameRowAs?: string;
  /** README row text when several variables share a row. */
  row?: { default: string; description: string };
  /** Validates and converts; throws ConfigProblem. `raw` is env[name] as given (maybe ''). */
  parse(raw: string | undefined, ctx: ParseContext): unknown;
  /** How `config check` prints the parsed value. Default: strings as is, lists joined by commas. */
  format?(value: unknown): string;
}

// --- value parsers (the rules of src/config/environment.ts) --------------------------------

function httpsOrigin(raw: string | undefined, fallback: string): string {
  const value = raw ?? fallback;
  const url = URL.parse(value);
  if (!url || url.protocol !== 'https:') throw new ConfigProblem(`must be an https origin such as ${fallback}, got ${JSON.stringify(value)}`);
  if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    throw new ConfigProblem(`must be an origin without path, query or credentials, got ${JSON.stringify(value)}`);
  }
  return url.origin;
}

function port(raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) throw new ConfigProblem(`must be a TCP port number (0-65535), got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function originPort(origin: string | undefined, fallback: number): number {
  const url = origin ? URL.parse(origin) : null;
  return url?.port ? Number(url.port) : fallback;
}

function wholeNumber(raw: string | undefined, fallback: number, max: number, unit: string): number {
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw new ConfigProblem(`must be a whole number of ${unit} from 1 to ${max}, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function httpsUrl(raw: string | undefined, fallback: string): string {
  const value = raw || fallback;
  if (URL.parse(value)?.protocol !== 'https:') throw new ConfigProblem(`must be an https URL, got ${JSON.stringify(value)}`);
  return value;
}

const list = (raw: string | undefined) => (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);

function applicationUrls(raw: string | undefined): string[] {
  if (!raw) return [];
  return list(raw).map((value) => {
    const url = URL.parse(value);
    if (!url || url.protocol !== 'https:' || !url.host || (url.href !== value && url.href !== `${value}/`)) {
      throw new ConfigProblem(`every entry must be an https application URL, got ${JSON.stringify(value)}`);
    }
    return value;
  });
}

function serviceBase(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  const url = URL.parse(raw);
  if (!url || url.protocol !== 'https:' || url.search || url.hash || url.username || url.password) {
    throw new ConfigProblem(`must be an https URL without query or fragment, got ${JSON.stringify(raw)}`);
  }
  return raw.replace(/\/+$/, '');
}

const ROLE_LABELS = ['energy-data-provider', 'carbon-accounting-provider', 'financial-service-provider'];
const OPERATOR_ROLES: readonly OperatorRole[] = ['energy-data-provider', 'carbon-accounting-provider'];
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/i;

function licenseRoles(raw: string | undefined): Record<string, string> {
  const roles: Record<string, string> = {};
  for (const entry of list(raw)) {
    const m = /^([a-z0-9-]+)=([a-z-]+)$/.exec(entry);
    if (!m || !ROLE_LABELS.includes(m[2])) throw new ConfigProblem(`entries are license-label=role with role one of ${ROLE_LABELS.join(', ')}, got ${JSON.stringify(entry)}`);
    roles[m[1]] = m[2];
  }
  return roles;
}

function dataPeriodMonths(raw: string | undefined): ServerConfig['dataPeriodMonths'] {
  const result = { default: 12, byLicense: {} as Record<string, number> };
  for (const entry of list(raw)) {
    const m = /^(?:([a-z0-9-]+)=)?(\d{1,3})$/.exec(entry);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 120) throw new ConfigProblem(`entries are N or license-label=N with N from 1 to 120, got ${JSON.stringify(entry)}`);
    if (m[1]) result.byLicense[m[1]] = Number(m[2]);
    else result.default = Number(m[2]);
  }
  return result;
}

function headerName(raw: string | undefined): string | undefined {
  const value = raw?.trim().toLowerCase() || undefined;
  if (value !== undefined && !HEADER_NAME.test(value)) throw new ConfigProblem(`must be an HTTP header name, got ${JSON.stringify(value)}`);
  return value;
}

/** `N/S`: N per S seconds (1 ≤ S ≤ 86400); `0` or `off`: no limit. */
function rateLimit(raw: string | undefined, fallback: RateLimitSetting): RateLimitSetting {
  if (raw === undefined || raw === '') return fallback;
  if (raw === '0' || raw === 'off') return { limit: 0, windowMs: fallback.windowMs };
  const m = /^(\d{1,6})\/(\d{1,5})$/.exec(raw);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 86_400) throw new ConfigProblem(`must be N/S (N attempts per S seconds, S from 1 to 86400) or off, got ${JSON.stringify(raw)}`);
  return { limit: Number(m[1]), windowMs: Number(m[2]) * 1000 };
}

const formatRateLimit = (value: unknown) => {
  const v = value as RateLimitSetting;
  return v.limit === 0 ? 'off' : `${v.limit}/${v.windowMs / 1000}`;
};

const dataDirOf = (ctx: ParseContext) => ctx.get('dataDir') ?? path.resolve(ctx.cwd, './data');
const pkiFile = (ctx: ParseContext, file: string) => path.join(dataDirOf(ctx), 'pki', file);
const fileVar = (raw: string | undefined, ctx: ParseContext, fallback: string) => path.resolve(ctx.cwd, raw || fallback);
const optionalFile = (raw: string | undefined, ctx: ParseContext) => (raw ? path.resolve(ctx.cwd, raw) : undefined);

// --- the schema ------------------------------------------------------------------------------

const server = 'server' as const;
const operations = 'operations' as const;

export const CONFIG_SCHEMA: readonly ConfigVariable[] = [
  {
    name: 'ISSUER', key: 'issuer', type: 'https origin', group: server,
    default: '`https://localhost:8443`', description: 'Public https origin: browsers, metadata, JWKS.',
    parse: (raw) => httpsOrigin(raw, 'https://localhost:8443'),
  },
  {
    name: 'MTLS_ORIGIN', key: 'mtlsOrigin', type: 'https origin', group: server,
    default: '`https://localhost:8444`',
    description: 'Origin of the mutual-TLS listener: PAR, token, revocation, introspection, permission endpoint. Must differ from `ISSUER`.',
    parse: (raw, ctx) => {
      const origin = httpsOrigin(raw, 'https://localhost:8444');
      if (origin === ctx.get('issuer')) throw new ConfigProblem('must differ from ISSUER: browsers must never be asked for a client certificate');
      return origin;
    },
  },
  {
    name: 'PUBLIC_PORT', key: 'publicPort', type: 'TCP port', group: server,
    default: "the port of `ISSUER`, else 8443", description: 'Port the public listener binds.',
    row: { default: "the origins' ports", description: 'Ports the two listeners bind.' },
    parse: (raw, ctx) => port(raw, originPort(ctx.get('issuer'), 8443)),
  },
  {
    name: 'MTLS_PORT', key: 'mtlsPort', type: 'TCP port', group: server, sameRowAs: 'PUBLIC_PORT',
    default: 'the port of `MTLS_ORIGIN`, else 8444', description: 'Port the mTLS listener binds.',
    parse: (raw, ctx) => port(raw, originPort(ctx.get('mtlsOrigin'), 8444)),
  },
  {
    name: 'WORKERS', key: 'workers', type: 'count', group: server,
    default: '`1`', description: 'Server processes sharing both listeners (node:cluster); a dead worker is replaced.',
    parse: (raw) => wholeNumber(raw, 1, 64, 'processes'),
  },
  {
    name: 'LISTEN_HOST', key: 'listenHost', type: 'address', group: server,
    default: '`127.0.0.1`', description: 'Address both listeners bind (`0.0.0.0` or `::` to serve a network).',
    parse: (raw) => raw || '127.0.0.1',
  },
  {
    name: 'DATA_DIR', key: 'dataDir', type: 'directory', group: server,
    default: '`./data`', description: 'Embedded store, keys and the dev trust framework.',
    parse: (raw, ctx) => path.resolve(ctx.cwd, raw || './data'),
  },
  {
    name: 'RESOURCE_SERVERS', key: 'resourceServers', type: 'list of https application URLs', group: server,
    default: 'none', description: 'Comma-separated application URLs allowed to introspect.',
    parse: (raw) => applicationUrls(raw),
  },
  {
    name: 'TLS_CERT_FILE', key: 'tlsCertFile', type: 'file (PEM)', group: server,
    default: '`DATA_DIR/pki/server.pem`', description: 'Server certificate (chain) for both listeners.',
    row: { default: '`DATA_DIR/pki/server.pem`, `server.key.pem`', description: 'Server certificate and key for both listeners.' },
    parse: (raw, ctx) => fileVar(raw, ctx, pkiFile(ctx, 'server.pem')),
  },
  {
    name: 'TLS_KEY_FILE', key: 'tlsKeyFile', type: 'file (PEM)', group: server, sameRowAs: 'TLS_CERT_FILE',
    default: '`DATA_DIR/pki/server.key.pem`', description: 'Server private key for both listeners.',
    parse: (raw, ctx) => fileVar(raw, ctx, pkiFile(ctx, 'server.key.pem')),
  },
  {
    name: 'CLIENT_CA_FILE', key: 'clientCaFile', type: 'file (PEM)', group: server,
    default: '`DATA_DIR/pki/client-ca.pem`', description: 'Trusted IB1 Client CA root(s), PEM.',
    parse: (raw, ctx) => fileVar(raw, ctx, pkiFile(ctx, 'client-ca.pem')),
  },
  {
    name: 'CLIENT_ISSUERS_FILE', key: 'clientIssuersFile', type: 'file (PEM)', group: server,
    default: '`DATA_DIR/pki/client-issuer.pem`', description: 'Known Client Issuer intermediates (clients normally send theirs).',
    parse: (raw, ctx) => fileVar(raw, ctx, pkiFile(ctx, 'client-issuer.pem')),
  },
  {
    name: 'DIRECTORY_FILE', key: 'directoryFile', type: 'file (JSON)', group: server,
    default: '`DATA_DIR/directory.json`', description: 'Local directory of applications (names, roles, `messageDelivery`).',
    parse: (raw, ctx) => fileVar(raw, ctx, path.join(dataDirOf(ctx), 'directory.json')),
  },
  {
    name: 'OPERATOR_NAME', key: 'operatorName', type: 'text', group: server,
    default: '`Perseus Demo Operator`', description: 'Organisation running the server, shown to SMEs.',
    parse: (raw) => raw || 'Perseus Demo Operator',
  },
  {
    name: 'OPERATOR_ROLE', key: 'operatorRole', type: 'role label', group: server,
    default: '`carbon-accounting-provider`', description: '`energy-data-provider` or `carbon-accounting-provider`; picks the default licenses.',
    parse: (raw) => {
      const role = (raw || 'carbon-accounting-provider') as OperatorRole;
      if (!OPERATOR_ROLES.includes(role)) throw new ConfigProblem(`must be one of ${OPERATOR_ROLES.join(', ')}, got ${JSON.stringify(raw)}`);
      return role;
    },
  },
  {
    name: 'LICENSES', key: 'licenses', type: 'list of license URLs or labels', group: server,
    default: 'licenses flowing from `OPERATOR_ROLE`', description: 'Comma-separated license URLs or labels this server grants.',
    parse: (raw) => {
      if (!raw) return undefined;
      const licenses = list(raw);
      if (licenses.length === 0) throw new ConfigProblem('lists no license');
      return licenses;
    },
  },
  {
    name: 'EDP_NAME', key: 'edpName', type: 'text', group: server,
    default: '`OPERATOR_NAME` when the operator is the energy data provider, else `Demo Energy Data Provider`', description: 'Name for `[EDP]` in permission texts.',
    row: { default: "`OPERATOR_NAME` for the operator's role", description: 'Names for `[EDP]` and `[CAP]` in permission texts.' },
    parse: (raw, ctx) => raw || (ctx.get('operatorRole') === 'energy-data-provider' ? (ctx.get('operatorName') ?? 'Perseus Demo Operator') : 'Demo Energy Data Provider'),
  },
  {
    name: 'CAP_NAME', key: 'capName', type: 'text', group: server, sameRowAs: 'EDP_NAME',
    default: '`OPERATOR_NAME` when the operator is the carbon accounting provider, else `Demo Carbon Accounting Provider`', description: 'Name for `[CAP]` in permission texts.',
    parse: (raw, ctx) => raw || (ctx.get('operatorRole') === 'carbon-accounting-provider' ? (ctx.get('operatorName') ?? 'Perseus Demo Operator') : 'Demo Carbon Accounting Provider'),
  },
  {
    name: 'EDP_PRIVACY_POLICY_URL', key: 'edpPrivacyPolicyUrl', type: 'https URL', group: server,
    default: 'none', description: 'Link for `[EDP privacy policy link]`.',
    parse: (raw) => {
      const value = raw || '';
      if (value && URL.parse(value)?.protocol !== 'https:') throw new ConfigProblem(`must be an https URL, got ${JSON.stringify(value)}`);
      return value;
    },
  },
  {
    name: 'ACCESS_TOKEN_TTL', key: 'accessTokenTtl', type: 'seconds', group: server,
    default: '`600`', description: 'Access token lifetime in seconds (at most 3600).',
    parse: (raw) => wholeNumber(raw, 600, 3600, 'seconds'),
  },
  {
    name: 'DATA_PERIOD_MONTHS', key: 'dataPeriodMonths', type: 'N or label=N list', group: server,
    default: '`12`', description: 'Whole months back a data provider may serve: `N`, or per license `label=N`, e.g. `emissions-cap-fsp=24,12`.',
    parse: (raw) => dataPeriodMonths(raw),
    format: (value) => {
      const v = value as ServerConfig['dataPeriodMonths'];
      return [String(v.default), ...Object.entries(v.byLicense).map(([label, n]) => `${label}=${n}`)].join(',');
    },
  },
  {
    name: 'TRUST_FRAMEWORK_URL', key: 'trustFrameworkUrl', type: 'https URL', group: server,
    default: '`https://registry.core.trust.ib1.org/trust-framework`', description: '`ib1:message` value of messages to clients.',
    parse: (raw) => httpsUrl(raw, 'https://registry.core.trust.ib1.org/trust-framework'),
  },
  {
    name: 'OPERATOR_APPLICATION_URL', key: 'operatorApplicationUrl', type: 'https URL', group: server,
    default: '`ISSUER/application`', description: "The operator's own application URL (its member certificate's SAN).",
    parse: (raw, ctx) => {
      const issuer = ctx.get('issuer');
      if (!raw && !issuer) return undefined; // ISSUER is wrong: its problem is reported already
      return httpsUrl(raw, `${issuer}/application`);
    },
  },
  {
    name: 'OPERATOR_CERT_FILE', key: 'operatorCertFile', type: 'file (PEM)', group: server,
    default: '`DATA_DIR/pki/operator/client-bundle.pem`', description: 'Operator member certificate (leaf + issuer) for mTLS messages to clients.',
    row: { default: '`DATA_DIR/pki/operator/client-bundle.pem`, `client.key.pem`', description: 'Operator member certificate for mTLS messages to clients.' },
    parse: (raw, ctx) => fileVar(raw, ctx, pkiFile(ctx, 'operator/client-bundle.pem')),
  },
  {
    name: 'OPERATOR_KEY_FILE', key: 'operatorKeyFile', type: 'file (PEM)', group: server, sameRowAs: 'OPERATOR_CERT_FILE',
    default: '`DATA_DIR/pki/operator/client.key.pem`', description: 'Key of the operator member certificate.',
    parse: (raw, ctx) => fileVar(raw, ctx, pkiFile(ctx, 'operator/client.key.pem')),
  },
  {
    name: 'OUTBOUND_CA_FILE', key: 'outboundCaFile', type: 'file (PEM)', group: server,
    default: 'none (system roots)', description: 'Extra CAs to trust when delivering messages.',
    parse: optionalFile,
  },
  {
    name: 'OUTBOX_GIVE_UP_AFTER', key: 'outboxGiveUpAfter', type: 'seconds', group: server,
    default: '`604800`', description: 'Seconds after which an undelivered message is given up.',
    parse: (raw) => wholeNumber(raw, 7 * 24 * 3600, 90 * 24 * 3600, 'seconds'),
  },
  {
    name: 'LICENSE_ROLES', key: 'licenseRoles', type: 'label=role list', group: server,
    default: "each license's recipient role", description: 'Role a client needs per license, e.g. `energy-consumption-emissions-edp-cap-fsp=carbon-accounting-provider`.',
    parse: (raw) => licenseRoles(raw),
  },
  {
    name: 'STORAGE', key: 'storage', type: '`sqlite` or `mongo`', group: server,
    default: '`sqlite`', description: '`sqlite` (embedded) or `mongo` (MongoDB + Redis).',
    parse: (raw) => {
      const kind = raw || 'sqlite';
      if (kind !== 'sqlite' && kind !== 'mongo') throw new ConfigProblem(`must be sqlite or mongo, got ${JSON.stringify(kind)}`);
      return kind;
    },
  },
  {
    name: 'SQLITE_CACHE_MIB', key: 'sqliteCacheMib', type: 'MiB', group: server,
    default: '`64`', description: "Page cache of the embedded store, per server process. Raise it when the pages of the tokens and grants in use outgrow it; it is the process's own memory, which fills as the database grows.",
    parse: (raw) => wholeNumber(raw, 64, 65536, 'MiB'),
  },
  {
    name: 'MONGODB_URI', key: 'mongodbUri', type: 'mongodb:// URI', group: server, secret: 'url-credentials',
    default: 'none', description: 'MongoDB of `STORAGE=mongo`, e.g. `mongodb://db1,db2,db3/perseus?replicaSet=rs0`. Its password is masked by `config check`.',
    row: { default: 'none', description: 'Required with `STORAGE=mongo`. Passwords in them are masked by `config check`.' },
    // The value is never quoted in the problem: it may hold a password.
    parse: (raw, ctx) => {
      if (ctx.get('storage') !== 'mongo') return undefined;
      if (!raw || !/^mongodb(\+srv)?:\/\/[^\s]+$/.test(raw)) throw new ConfigProblem('must be a mongodb:// or mongodb+srv:// URI when STORAGE=mongo');
      return raw;
    },
  },
  {
    name: 'REDIS_URL', key: 'redisUrl', type: 'redis:// URL', group: server, secret: 'url-credentials', sameRowAs: 'MONGODB_URI',
    default: 'none', description: 'Redis of `STORAGE=mongo`, e.g. `redis://redis:6379/0` (`rediss://` for TLS). Its password is masked by `config check`.',
    parse: (raw, ctx) => {
      if (ctx.get('storage') !== 'mongo') return undefined;
      if (!raw || !/^rediss?:\/\/[^\s]+$/.test(raw)) throw new ConfigProblem('must be a redis:// or rediss:// URL when STORAGE=mongo');
      return raw;
    },
  },
  {
    name: 'STORE_TIMEOUT_MS', key: 'storeTimeoutMs', type: 'milliseconds', group: server,
    default: '`3000`', description: 'How long start-up and each store operation wait for a store.',
    parse: (raw) => wholeNumber(raw, 3000, 60_000, 'milliseconds'),
  },
  {
    name: 'DIRECTORY_URL', key: 'directoryUrl', type: 'https URL', group: server,
    default: 'none (local `DIRECTORY_FILE` only)', description: 'IB1 Directory base, e.g. `https://directory.core.sandbox.trust.ib1.org`.',
    parse: (raw) => serviceBase(raw),
  },
  {
    name: 'REGISTRY_URL', key: 'registryUrl', type: 'https URL', group: server,
    default: 'none (bundled snapshot)', description: 'IB1 Registry base (or a mirror) to refresh licenses from at start-up.',
    parse: (raw) => serviceBase(raw),
  },
  {
    name: 'IB1_CA_FILE', key: 'ib1CaFile', type: 'file (PEM)', group: server,
    default: 'none (system roots)', description: 'Extra CAs to trust for the Directory and Registry.',
    parse: optionalFile,
  },
  {
    name: 'CRL_URLS', key: 'crlUrls', type: 'list of http(s) URLs', group: server,
    default: 'none', description: 'CRLs of the Client CA and Client Issuer(s), fetched and refreshed.',
    row: {
      default: 'none',
      description: "CRLs of the Client CA and Client Issuer(s). When set, revoked certificates are refused, and so is every certificate once its issuer's CRL is past `nextUpdate` (fail closed).",
    },
    parse: (raw) => {
      try {
        return crlSourcesFromConfig({ urls: raw }).map((source) => (source.kind === 'url' ? source.url : ''));
      } catch (error) {
        throw new ConfigProblem((error as Error).message.replace(/^CRL_URLS: /, ''));
      }
    },
  },
  {
    name: 'CRL_FILES', key: 'crlFiles', type: 'list of files', group: server, sameRowAs: 'CRL_URLS',
    default: 'none', description: 'CRL files (DER or PEM) of the Client CA and Client Issuer(s).',
    parse: (raw, ctx) => list(raw).map((file) => path.resolve(ctx.cwd, file)),
  },
  {
    name: 'CRL_CA_FILE', key: 'crlCaFile', type: 'file (PEM)', group: server,
    default: 'none (system roots)', description: 'CA to trust for https CRL URLs.',
    parse: optionalFile,
  },
  {
    name: 'CRL_INTERMEDIATES', key: 'crlIntermediates', type: '`require` or `if-listed`', group: server,
    default: '`require`', description: '`require`: the Client Issuer must be covered by a current root CRL; `if-listed`: only when one was loaded.',
    parse: (raw) => {
      const value = raw || 'require';
      if (value !== 'require' && value !== 'if-listed') throw new ConfigProblem(`must be require or if-listed, got ${JSON.stringify(raw)}`);
      return value;
    },
  },
  {
    name: 'CRL_START_TIMEOUT', key: 'crlStartTimeout', type: 'seconds', group: server,
    default: '`30`', description: 'Seconds start-up waits for every CRL source.',
    parse: (raw) => wholeNumber(raw, 30, 600, 'seconds'),
  },
  {
    name: 'TRUSTED_PROXIES', key: 'trustedProxies', type: 'list of addresses/CIDRs', group: server,
    default: 'none', description: 'Addresses/CIDRs of TLS-terminating proxies whose `X-Forwarded-*` and certificate headers are believed.',
    parse: (raw) => {
      const proxies = list(raw);
      try {
        new TrustedProxies(proxies);
      } catch (error) {
        throw new ConfigProblem((error as Error).message.replace(/^TRUSTED_PROXIES: /, ''));
      }
      return proxies;
    },
  },
  {
    name: 'CLIENT_CERT_HEADER', key: 'clientCertHeader', type: 'header name', group: server,
    default: 'none', description: 'Header carrying the client certificate (URL-encoded PEM) from a trusted proxy. Needs `TRUSTED_PROXIES`.',
    row: {
      default: 'none',
      description: 'Header carrying the client certificate (URL-encoded PEM) from a trusted proxy: `x-amzn-mtls-clientcert-leaf` (AWS ALB) or e.g. `x-ssl-client-escaped-cert` (nginx); optional chain header.',
    },
    parse: (raw) => headerName(raw),
  },
  {
    name: 'CLIENT_CERT_CHAIN_HEADER', key: 'clientCertChainHeader', type: 'header name', group: server, sameRowAs: 'CLIENT_CERT_HEADER',
    default: 'none', description: 'Header carrying the intermediates from a trusted proxy, e.g. `x-amzn-mtls-clientcert`.',
    parse: (raw, ctx) => {
      const chain = headerName(raw);
      if ((ctx.get('clientCertHeader') || chain) && !ctx.failed('clientCertHeader') && !ctx.failed('trustedProxies') && (ctx.get('trustedProxies') ?? []).length === 0) {
        throw new ConfigProblem('needs TRUSTED_PROXIES: the header is believed only from trusted proxies', 'CLIENT_CERT_HEADER');
      }
      return chain;
    },
  },

  // --- operations (new) ---------------------------------------------------------------------
  {
    name: 'METRICS_PORT', key: 'metricsPort', type: 'TCP port', group: operations,
    default: 'none (not started)',
    description: 'Port of the internal listener serving `/metrics`, `/health/live` and `/health/ready` in plain HTTP. For the private network only: never publish it.',
    parse: (raw) => (raw === undefined || raw === '' ? undefined : port(raw, 0)),
  },
  {
    name: 'METRICS_HOST', key: 'metricsHost', type: 'address', group: operations,
    default: '`127.0.0.1`', description: 'Address the metrics listener binds (a private address, e.g. the pod IP or `0.0.0.0` inside a private network).',
    parse: (raw) => raw || '127.0.0.1',
  },
  {
    name: 'LOG_LEVEL', key: 'logLevel', type: 'log level', group: operations,
    default: '`info`', description: '`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`. Logs are JSON lines on stdout.',
    parse: (raw) => {
      const level = raw || 'info';
      const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
      if (!levels.includes(level)) throw new ConfigProblem(`must be one of ${levels.join(', ')}, got ${JSON.stringify(raw)}`);
      return level;
    },
  },
  {
    name: 'RATE_LIMIT_SIGN_IN_IP', key: 'rateLimitSignInIp', type: 'N/seconds', group: operations,
    default: '`50/900`', description: 'Sign-in attempts allowed per client IP address and window (`N/S`: N per S seconds; `off` for none).',
    parse: (raw) => rateLimit(raw, { limit: 50, windowMs: 900_000 }), format: formatRateLimit,
  },
  {
    name: 'RATE_LIMIT_SIGN_IN_ACCOUNT', key: 'rateLimitSignInAccount', type: 'N/seconds', group: operations,
    default: '`10/900`', description: 'Sign-in attempts allowed per account (email) and window; a successful sign-in starts a new window.',
    parse: (raw) => rateLimit(raw, { limit: 10, windowMs: 900_000 }), format: formatRateLimit,
  },
  {
    name: 'RATE_LIMIT_CLIENT', key: 'rateLimitClient', type: 'N/seconds', group: operations,
    default: '`600/60`', description: 'PAR and token requests allowed per client application (certificate URL) and window; beyond it `429 temporarily_unavailable` with `Retry-After`.',
    parse: (raw) => rateLimit(raw, { limit: 600, windowMs: 60_000 }), format: formatRateLimit,
  },
  {
    name: 'SHUTDOWN_TIMEOUT', key: 'shutdownTimeout', type: 'seconds', group: operations,
    default: '`10`', description: 'Seconds a shutdown (SIGTERM, SIGINT) waits for requests in flight before it cuts them; a second signal exits at once.',
    parse: (raw) => wholeNumber(raw, 10, 300, 'seconds'),
  },
];

// --- validation ------------------------------------------------------------------------------

export type ValidationResult =
  | { ok: true; errors: []; values: FullConfig }
  | { ok: false; errors: ConfigIssue[]; values: Partial<FullConfig> };

const issue = (variable: string, problem: string): ConfigIssue => ({ variable, problem, message: `${variable}: ${problem}` });

/**
 * Every problem of `env` at once, in schema order, and the values. A variable whose rule depends
 * on another one that is wrong is not reported again for it (the first problem explains both).
 */
export function validateEnvironment(env: Env = process.env, cwd: string = process.cwd()): ValidationResult {
  const values: Partial<Record<keyof FullConfig, unknown>> = {};
  const failed = new Set<keyof FullConfig>();
  const errors: ConfigIssue[] = [];
  const ctx: ParseContext = {
    env, cwd,
    get: (key) => values[key] as never,
    failed: (key) => failed.has(key),
  };
  for (const variable of CONFIG_SCHEMA) {
    try {
      values[variable.key] = variable.parse(env[variable.name], ctx);
    } catch (error) {
      failed.add(variable.key);
      values[variable.key] = undefined;
      if (error instanceof ConfigProblem) errors.push(issue(error.variable ?? variable.name, error.message));
      else errors.push(issue(variable.name, (error as Error)?.message ?? String(error)));
    }
  }
  return errors.length === 0
    ? { ok: true, errors: [], values: values as FullConfig }
    : { ok: false, errors, values: values as Partial<FullConfig> };
}

/** All problems as one text: one line per problem (for start-up and `config check`). */
export function describeIssues(errors: readonly ConfigIssue[]): string {
  return errors.map((e) => e.message).join('\n');
}

// --- effective configuration ----------------------------------------------------------------

const MASK = '****';
const SECRET_PARAM = /pass|secret|token|key|credential/i;

/**
 * `scheme://user:password@host…` → `scheme://user:****@host…`; a userinfo without a colon (a
 * token as user name) is masked whole; query parameters named like secrets are masked too.
 */
export function maskUrlCredentials(value: string): string {
  const masked = value.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i, (_all, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon === -1 ? `${scheme}${MASK}@` : `${scheme}${userinfo.slice(0, colon)}:${MASK}@`;
  });
  return masked.replace(/([?&])([^=&#]+)=([^&#]*)/g, (all, sep: string, name: string) => (SECRET_PARAM.test(decodeURIComponent(name)) ? `${sep}${name}=${MASK}` : all));
}

export function maskSecret(variable: Pick<ConfigVariable, 'secret'>, value: string): string {
  if (!variable.secret || value === '') return value;
  return variable.secret === 'value' ? MASK : maskUrlCredentials(value);
}

function formatValue(variable: ConfigVariable, value: unknown): string {
  if (value === undefined || value === null) return '(none)';
  if (variable.format) return variable.format(value);
  if (Array.isArray(value)) return value.length ? value.join(',') : '(none)';
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>);
    return entries.length ? entries.map(([k, v]) => `${k}=${String(v)}`).join(',') : '(none)';
  }
  return String(value) === '' ? '(none)' : String(value);
}

export interface EffectiveSetting {
  name: string;
  group: ConfigVariable['group'];
  /** Where the value came from. */
  source: 'environment' | 'default';
  /** The value in force (masked); for an invalid variable, the value given (masked). */
  value: string;
  secret: boolean;
  /** The variable's problem, if any. */
  problem?: string;
}

export interface EffectiveConfiguration {
  ok: boolean;
  errors: ConfigIssue[];
  settings: EffectiveSetting[];
  /** Variables in the environment that look like ours but are not in the schema (typos). */
  unknown: string[];
}

const OUR_PREFIXES = ['ISSUER', 'MTLS_', 'TLS_', 'CLIENT_', 'OPERATOR_', 'CRL_', 'OUTBOX_', 'RATE_LIMIT_', 'METRICS_', 'LICENSE', 'EDP_', 'CAP_', 'DATA_', 'STORE_', 'DIRECTORY_', 'REGISTRY_', 'IB1_', 'TRUST', 'SHUTDOWN_', 'LOG_', 'ACCESS_TOKEN', 'PUBLIC_PORT', 'LISTEN_', 'RESOURCE_'];

export function effectiveConfiguration(env: Env = process.env, cwd: string = process.cwd()): EffectiveConfiguration {
  const result = validateEnvironment(env, cwd);
  const problems = new Map(result.errors.map((e) => [e.variable, e.problem]));
  const settings = CONFIG_SCHEMA.map((variable): EffectiveSetting => {
    const raw = env[variable.name];
    const problem = problems.get(variable.name);
    const shown = problem !== undefined ? (raw === undefined ? '(unset)' : raw) : formatValue(variable, result.values[variable.key]);
    return {
      name: variable.name, group: variable.group,
      source: raw !== undefined && raw !== '' ? 'environment' : 'default',
      value: maskSecret(variable, shown), secret: variable.secret !== undefined,
      ...(problem !== undefined ? { problem } : {}),
    };
  });
  const known = new Set(CONFIG_SCHEMA.map((v) => v.name));
  const unknown = Object.keys(env).filter((name) => !known.has(name) && OUR_PREFIXES.some((prefix) => name.startsWith(prefix))).sort();
  return { ok: result.ok, errors: result.errors, settings, unknown };
}

/** The text of `npm run cli -- config check`: one line per variable, then the problems. */
export function formatConfigCheck(report: EffectiveConfiguration): string {
  const width = Math.max(...report.settings.map((s) => s.name.length));
  const lines = report.settings.map((s) => `${s.name.padEnd(width)}  ${s.value}${s.source === 'default' ? '  (default)' : ''}${s.problem ? `  <- ${s.problem}` : ''}`);
  for (const name of report.unknown) lines.push(`warning: ${name} is not a variable of this server (a typo?)`);
  lines.push(report.ok ? 'configuration ok' : `${report.errors.length} configuration problem${report.errors.length === 1 ? '' : 's'}:\n${describeIssues(report.errors)}`);
  return lines.join('\n');
}

// --- documentation ---------------------------------------------------------------------------

export const CONFIG_TABLE_START = '<!-- config-table:start -->';
export const CONFIG_TABLE_END = '<!-- config-table:end -->';

/** The README's configuration table, one row per variable or group of variables sharing a row. */
export function configTableMarkdown(schema: readonly ConfigVariable[] = CONFIG_SCHEMA): string {
  const rows: string[] = ['| Variable | Default | Meaning |', '| --- | --- | --- |'];
  for (const variable of schema) {
    if (variable.sameRowAs) continue;
    const members = [variable, ...schema.filter((other) => other.sameRowAs === variable.name)];
    const text = members.length > 1 && variable.row ? variable.row : variable;
    rows.push(`| ${members.map((m) => `\`${m.name}\``).join(', ')} | ${text.default} | ${text.description} |`);
  }
  return rows.join('\n');
}

/** The part of `readme` between the markers (trimmed), or undefined when a marker is missing. */
export function configTableIn(readme: string): string | undefined {
  const start = readme.indexOf(CONFIG_TABLE_START);
  const end = readme.indexOf(CONFIG_TABLE_END);
  if (start === -1 || end === -1 || end < start) return undefined;
  return readme.slice(start + CONFIG_TABLE_START.length, end).trim();
}

/** `readme` with the table between the markers replaced by `table`. */
export function replaceConfigTable(readme: string, table: string = configTableMarkdown()): string {
  const start = readme.indexOf(CONFIG_TABLE_START);
  const end = readme.indexOf(CONFIG_TABLE_END);
  if (start === -1 || end === -1 || end < start) throw new Error(`the README has no ${CONFIG_TABLE_START} … ${CONFIG_TABLE_END} markers`);
  return `${readme.slice(0, start + CONFIG_TABLE_START.length)}\n${table}\n${readme.slice(end)}`;
}
