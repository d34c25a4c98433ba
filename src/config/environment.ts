import { validateEnvironment, type ConfigIssue, type OpsConfig } from '../ops/config-schema.ts';

/**
 * The server's configuration, read once from environment variables at start-up.
 *
 * Variables, defaults, rules and documentation are ONE schema: src/ops/config-schema.ts (the
 * README's table is generated from it). A bad configuration stops start-up with one line per
 * problem, every problem at once.
 */
export type OperatorRole = 'energy-data-provider' | 'carbon-accounting-provider';

export interface ServerConfig extends OpsConfig {
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
  /** SQLITE_CACHE_MIB: the embedded store's page cache per process, in MiB. Default 64. */
  sqliteCacheMib: number;
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
  /** The first variable in error (the message is its problem, one line). */
  readonly variable: string;
  /** Every problem of the configuration, in schema order. */
  readonly issues: ConfigIssue[];
  constructor(variable: string, problem: string, issues?: ConfigIssue[]) {
    super(`${variable}: ${problem}`);
    this.variable = variable;
    this.issues = issues ?? [{ variable, problem, message: `${variable}: ${problem}` }];
  }
}

type Env = Record<string, string | undefined>;

/** The configuration of `env`, or a ConfigError carrying every problem (src/ops/config-schema.ts). */
export function loadConfig(env: Env = process.env, cwd = process.cwd()): ServerConfig {
  const result = validateEnvironment(env, cwd);
  if (!result.ok) {
    const [first] = result.errors;
    throw new ConfigError(first.variable, first.problem, result.errors);
  }
  return result.values;
}
