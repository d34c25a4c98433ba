import { readFileSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { ConfigError, loadConfig } from '../../src/config/environment.ts';
import {
  CONFIG_SCHEMA, effectiveConfiguration, formatConfigCheck, maskUrlCredentials, validateEnvironment,
} from '../../src/ops/config-schema.ts';

const CWD = '/srv/perseus';

describe('validateEnvironment', () => {
  it('lists every problem at once, each naming its variable on one line', () => {
    const result = validateEnvironment({
      ISSUER: 'http://auth.example', PUBLIC_PORT: '70000', ACCESS_TOKEN_TTL: '10m', OPERATOR_ROLE: 'bank',
      STORAGE: 'mongo', MONGODB_URI: 'postgres://u:hunter2@db', CRL_INTERMEDIATES: 'sometimes', METRICS_PORT: 'x', RATE_LIMIT_CLIENT: '10 per minute',
    }, CWD);
    expect(result.ok).toBe(false);
    expect(result.errors.map((e) => e.variable)).toEqual([
      'ISSUER', 'PUBLIC_PORT', 'OPERATOR_ROLE', 'ACCESS_TOKEN_TTL', 'MONGODB_URI', 'REDIS_URL', 'CRL_INTERMEDIATES', 'METRICS_PORT', 'RATE_LIMIT_CLIENT',
    ]);
    for (const error of result.errors) {
      expect(error.message).toBe(`${error.variable}: ${error.problem}`);
      expect(error.message).not.toMatch(/[\r\n]/);
    }
    // A secret-bearing value is never quoted back.
    expect(JSON.stringify(result.errors)).not.toContain('hunter2');
  });

  it('reports a rule spanning two variables once, on the variable loadConfig names', () => {
    const result = validateEnvironment({ CLIENT_CERT_CHAIN_HEADER: 'x-amzn-mtls-clientcert' }, CWD);
    expect(result.errors).toEqual([expect.objectContaining({ variable: 'CLIENT_CERT_HEADER', problem: expect.stringContaining('needs TRUSTED_PROXIES') })]);
    // Not again when TRUSTED_PROXIES itself is wrong (its own problem explains it).
    expect(validateEnvironment({ CLIENT_CERT_HEADER: 'x-ssl-client-escaped-cert', TRUSTED_PROXIES: 'not-an-ip' }, CWD).errors.map((e) => e.variable)).toEqual(['TRUSTED_PROXIES']);
  });

  it('gives the operations settings their defaults', () => {
    const result = validateEnvironment({}, CWD);
    expect(result.ok).toBe(true);
    expect(result.values).toMatchObject({
      metricsPort: undefined, metricsHost: '127.0.0.1', logLevel: 'info', shutdownTimeout: 10,
      rateLimitSignInIp: { limit: 50, windowMs: 900_000 }, rateLimitSignInAccount: { limit: 10, windowMs: 900_000 }, rateLimitClient: { limit: 600, windowMs: 60_000 },
    });
    expect(validateEnvironment({ RATE_LIMIT_CLIENT: 'off', METRICS_PORT: '9464' }, CWD).values).toMatchObject({ rateLimitClient: { limit: 0 }, metricsPort: 9464 });
  });
});

/** Environments on which loadConfig and the schema must agree (values, or the first problem). */
const ENVIRONMENTS: Array<Record<string, string>> = [
  {},
  { ISSUER: 'https://auth.example:9443', MTLS_ORIGIN: 'https://mtls.example:9444' },
  { ISSUER: 'https://auth.example', MTLS_ORIGIN: 'https://mtls.example' },
  { ISSUER: 'https://auth.example:9443/' },
  { PUBLIC_PORT: '3000', MTLS_PORT: '0' },
  { WORKERS: '4' },
  { SQLITE_CACHE_MIB: '512' },
  { DATA_DIR: 'var/perseus' },
  { DATA_DIR: '/var/lib/perseus', TLS_CERT_FILE: 'certs/server.pem', CLIENT_CA_FILE: '/etc/ib1/ca.pem', OUTBOUND_CA_FILE: 'ca.pem', IB1_CA_FILE: 'ib1.pem', CRL_CA_FILE: 'crl-ca.pem' },
  { OPERATOR_NAME: 'Carbon Co' },
  { OPERATOR_NAME: 'Meter Co', OPERATOR_ROLE: 'energy-data-provider' },
  { EDP_NAME: 'E', CAP_NAME: 'C', EDP_PRIVACY_POLICY_URL: 'https://edp.example/privacy' },
  { RESOURCE_SERVERS: ' https://edp.example/api , https://cap.example/data/x,,' },
  { LICENSES: 'emissions-cap-fsp, https://registry.example/l/2' },
  { ACCESS_TOKEN_TTL: '3600', OUTBOX_GIVE_UP_AFTER: '60', STORE_TIMEOUT_MS: '500', CRL_START_TIMEOUT: '5' },
  { DATA_PERIOD_MONTHS: 'emissions-cap-fsp=24,12', LICENSE_ROLES: 'energy-consumption-emissions-edp-cap-fsp=carbon-accounting-provider' },
  { TRUST_FRAMEWORK_URL: 'https://tf.example/x', OPERATOR_APPLICATION_URL: 'https://dir.example/a/op' },
  { STORAGE: 'mongo', MONGODB_URI: 'mongodb://u:p@db1,db2/perseus?replicaSet=rs0', REDIS_URL: 'redis://:pw@redis:6379/0' },
  { STORAGE: 'sqlite', MONGODB_URI: 'mongodb://ignored', REDIS_URL: 'redis://ignored' },
  { DIRECTORY_URL: 'https://directory.example/', REGISTRY_URL: 'https://registry.example//' },
  { CRL_URLS: 'https://ca.example/root.crl, http://ca.example/issuer.crl', CRL_FILES: 'a.crl,/b.crl', CRL_INTERMEDIATES: 'if-listed' },
  { TRUSTED_PROXIES: '10.0.0.0/8, ::1', CLIENT_CERT_HEADER: ' X-SSL-Client-Escaped-Cert ', CLIENT_CERT_CHAIN_HEADER: 'x-chain' },
  // Bad values: one problem each (the cases of test/config/environment.test.ts and more).
  { ISSUER: 'http://localhost:8443' }, { ISSUER: 'localhost:8443' }, { ISSUER: 'https://auth.example/perseus' }, { ISSUER: 'https://auth.example/?x=1' },
  { ISSUER: 'https://user:pw@auth.example' }, { ISSUER: '' }, { MTLS_ORIGIN: 'http://localhost:8444' }, { MTLS_ORIGIN: 'https://localhost:8444/mtls' },
  { ISSUER: 'https://auth.example', MTLS_ORIGIN: 'https://auth.example:443/' },
  { WORKERS: '0' }, { WORKERS: '65' }, { SQLITE_CACHE_MIB: '0' }, { SQLITE_CACHE_MIB: '1.5' }, { SQLITE_CACHE_MIB: '65537' }, { PUBLIC_PORT: 'abc' }, { PUBLIC_PORT: '70000' }, { PUBLIC_PORT: '-1' }, { MTLS_PORT: '65536' },
  { RESOURCE_SERVERS: 'https://edp.example/api,http://cap.example/api' }, { RESOURCE_SERVERS: 'edp.example' },
  { OPERATOR_ROLE: 'financial-service-provider' }, { ACCESS_TOKEN_TTL: '7200' }, { ACCESS_TOKEN_TTL: '0' }, { ACCESS_TOKEN_TTL: '10m' },
  { LICENSES: ' , ' }, { EDP_PRIVACY_POLICY_URL: 'http://edp.example/privacy' }, { LICENSE_ROLES: 'x=banker' }, { DATA_PERIOD_MONTHS: '0' },
  { DATA_PERIOD_MONTHS: 'a=121' }, { TRUST_FRAMEWORK_URL: 'http://tf.example' }, { OPERATOR_APPLICATION_URL: 'ftp://x' }, { OUTBOX_GIVE_UP_AFTER: '99999999' },
  { CRL_URLS: 'ftp://ca.example/root.crl' }, { CRL_INTERMEDIATES: 'never' }, { CRL_START_TIMEOUT: '601' }, { TRUSTED_PROXIES: '10.0.0.0/33' },
  { CLIENT_CERT_HEADER: 'bad header', TRUSTED_PROXIES: '10.0.0.1' }, { CLIENT_CERT_HEADER: 'x-cert' }, { STORAGE: 'postgres' },
  { STORAGE: 'mongo' }, { STORAGE: 'mongo', MONGODB_URI: 'mongodb://db/perseus' }, { STORE_TIMEOUT_MS: '60001' },
  { DIRECTORY_URL: 'https://directory.example/?q=1' }, { REGISTRY_URL: 'http://registry.example' },
];

/** The names of the environment variables src/config/environment.ts reads. */
function variablesReadByLoadConfig(): string[] {
  const source = readFileSync(path.join(import.meta.dirname, '../../src/config/environment.ts'), 'utf8');
  const names = new Set<string>();
  for (const m of source.matchAll(/\benv\.([A-Z][A-Z0-9_]+)/g)) names.add(m[1]);
  // Every quoted upper-case name: variables appear as ('ISSUER', …), fileVar('TLS_CERT_FILE', …), header('…').
  for (const m of source.matchAll(/'([A-Z][A-Z0-9_]{2,})'/g)) names.add(m[1]);
  return [...names].sort();
}

describe('the schema and loadConfig (src/config/environment.ts) agree', () => {
  it('describes every variable loadConfig reads, and fills every key of its result', () => {
    const names = new Set(CONFIG_SCHEMA.map((v) => v.name));
    const read = variablesReadByLoadConfig();
    // Once loadConfig is built on validateEnvironment, environment.ts names no variable itself.
    if (!readFileSync(path.join(import.meta.dirname, '../../src/config/environment.ts'), 'utf8').includes('ops/config-schema')) {
      expect(read.length).toBeGreaterThan(35);
    }
    expect(read.filter((name) => !names.has(name))).toEqual([]);
    const keys = new Set(CONFIG_SCHEMA.map((v) => v.key));
    expect(Object.keys(loadConfig({}, CWD)).filter((key) => !keys.has(key as never))).toEqual([]);
  });

  for (const env of ENVIRONMENTS) {
    it(`on ${JSON.stringify(env)}`, () => {
      let expected: ReturnType<typeof loadConfig> | ConfigError;
      try {
        expected = loadConfig(env, CWD);
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        expected = error;
      }
      const result = validateEnvironment(env, CWD);
      if (expected instanceof ConfigError) {
        expect(result.ok).toBe(false);
        expect(result.errors[0]).toEqual({ variable: expected.variable, problem: expected.message.slice(expected.variable.length + 2), message: expected.message });
        // One problem each, except STORAGE=mongo alone: both MONGODB_URI and REDIS_URL are missing.
        expect(result.errors).toHaveLength(env.STORAGE === 'mongo' && !env.MONGODB_URI ? 2 : 1);
      } else {
        expect(result.errors).toEqual([]);
        const expectedConfig = expected;
        const values = result.values as Record<string, unknown>;
        expect(Object.fromEntries(Object.keys(expectedConfig).map((key) => [key, values[key]]))).toEqual(expectedConfig);
      }
    });
  }
});

describe('effectiveConfiguration (npm run cli -- config check)', () => {
  it('masks the passwords of MONGODB_URI and REDIS_URL, keeps the rest readable, and marks defaults', () => {
    const report = effectiveConfiguration({
      STORAGE: 'mongo', MONGODB_URI: 'mongodb://perseus:s3cr%40t@db1:27017,db2:27017/perseus?replicaSet=rs0&tlsCertificateKeyFilePassword=kfp',
      REDIS_URL: 'rediss://default:r3dis-pass@redis.internal:6380/0', ACCESS_TOKEN_TTL: '300',
    }, CWD);
    expect(report.ok).toBe(true);
    const text = formatConfigCheck(report);
    for (const secret of ['s3cr%40t', 'r3dis-pass', 'kfp']) expect(text).not.toContain(secret);
    const setting = (name: string) => report.settings.find((s) => s.name === name)!;
    expect(setting('MONGODB_URI')).toMatchObject({ value: 'mongodb://perseus:****@db1:27017,db2:27017/perseus?replicaSet=rs0&tlsCertificateKeyFilePassword=****', secret: true, source: 'environment' });
    expect(setting('REDIS_URL').value).toBe('rediss://default:****@redis.internal:6380/0');
    expect(setting('ACCESS_TOKEN_TTL')).toMatchObject({ value: '300', source: 'environment' });
    expect(setting('ISSUER')).toMatchObject({ value: 'https://localhost:8443', source: 'default' });
    expect(setting('DATA_DIR').value).toBe(path.join(CWD, 'data'));
    expect(text).toContain('configuration ok');
  });

  it('masks an invalid secret-bearing value too, lists every problem and warns about unknown look-alike variables', () => {
    const report = effectiveConfiguration({ STORAGE: 'mongo', MONGODB_URI: 'mongo://admin:hunter2@db', REDIS_URL: 'redis://:pw@r', PUBLIC_PORT: 'x', CRL_URL: 'https://typo.example' }, CWD);
    const text = formatConfigCheck(report);
    expect(report.ok).toBe(false);
    expect(text).not.toContain('hunter2');
    expect(report.settings.find((s) => s.name === 'MONGODB_URI')).toMatchObject({ value: 'mongo://admin:****@db', problem: expect.any(String) });
    expect(report.unknown).toEqual(['CRL_URL']);
    expect(text).toContain('2 configuration problems:\nPUBLIC_PORT: ');
    expect(text).toContain('MONGODB_URI: must be a mongodb://');
  });

  it('masks credentials in any URL form', () => {
    expect(maskUrlCredentials('redis://:pw@h:6379')).toBe('redis://:****@h:6379');
    expect(maskUrlCredentials('redis://token-as-user@h')).toBe('redis://****@h');
    expect(maskUrlCredentials('mongodb+srv://u:p@cluster.example/db?authSource=admin')).toBe('mongodb+srv://u:****@cluster.example/db?authSource=admin');
    expect(maskUrlCredentials('redis://h:6379/0')).toBe('redis://h:6379/0');
  });
});
