import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { ConfigError, loadConfig } from '../../src/config/environment.ts';

const CWD = '/srv/perseus';

/** The ConfigError loadConfig throws for this environment (fails the test when it does not throw one). */
function configErrorFor(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env, CWD);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig defaults', () => {
  const config = loadConfig({}, CWD);

  it('defaults ISSUER to https://localhost:8443 and MTLS_ORIGIN to https://localhost:8444', () => {
    expect(config.issuer).toBe('https://localhost:8443');
    expect(config.mtlsOrigin).toBe('https://localhost:8444');
  });

  it('takes the listener ports from the default origins', () => {
    expect(config.publicPort).toBe(8443);
    expect(config.mtlsPort).toBe(8444);
  });

  it('takes the listener ports from configured origins, and 443 when an origin names no port', () => {
    const custom = loadConfig({ ISSUER: 'https://auth.example:9443', MTLS_ORIGIN: 'https://mtls.example:9444' }, CWD);
    expect([custom.publicPort, custom.mtlsPort]).toEqual([9443, 9444]);
    // An https origin without a port has URL.port '' (443 is the default): the fallback applies.
    const bare = loadConfig({ ISSUER: 'https://auth.example', MTLS_ORIGIN: 'https://mtls.example' }, CWD);
    expect([bare.publicPort, bare.mtlsPort]).toEqual([8443, 8444]);
  });

  it('lets PUBLIC_PORT and MTLS_PORT override the ports of the origins (e.g. behind a proxy)', () => {
    const config = loadConfig({ PUBLIC_PORT: '3000', MTLS_PORT: '0' }, CWD);
    expect([config.publicPort, config.mtlsPort]).toEqual([3000, 0]);
  });

  it('resolves DATA_DIR ./data against the working directory and derives the PKI and directory files from it', () => {
    expect(config.dataDir).toBe(path.join(CWD, 'data'));
    expect(config.tlsCertFile).toBe(path.join(CWD, 'data/pki/server.pem'));
    expect(config.tlsKeyFile).toBe(path.join(CWD, 'data/pki/server.key.pem'));
    expect(config.clientCaFile).toBe(path.join(CWD, 'data/pki/client-ca.pem'));
    expect(config.clientIssuersFile).toBe(path.join(CWD, 'data/pki/client-issuer.pem'));
    expect(config.directoryFile).toBe(path.join(CWD, 'data/directory.json'));
  });

  it('resolves a relative DATA_DIR against the working directory and keeps an absolute one', () => {
    expect(loadConfig({ DATA_DIR: 'var/perseus' }, CWD).dataDir).toBe(path.join(CWD, 'var/perseus'));
    expect(loadConfig({ DATA_DIR: '/var/lib/perseus' }, CWD).dataDir).toBe('/var/lib/perseus');
  });

  it('defaults to no resource servers, the carbon-accounting-provider role, a 600 s token and listening on 127.0.0.1', () => {
    expect(config.resourceServers).toEqual([]);
    expect(config.operatorRole).toBe('carbon-accounting-provider');
    expect(config.licenses).toBeUndefined();
    expect(config.accessTokenTtl).toBe(600);
    expect(config.listenHost).toBe('127.0.0.1');
  });

  it('names the operator as CAP for a carbon-accounting-provider and as EDP for an energy-data-provider', () => {
    const cap = loadConfig({ OPERATOR_NAME: 'Carbon Co' }, CWD);
    expect([cap.capName, cap.edpName]).toEqual(['Carbon Co', 'Demo Energy Data Provider']);
    const edp = loadConfig({ OPERATOR_NAME: 'Meter Co', OPERATOR_ROLE: 'energy-data-provider' }, CWD);
    expect([edp.capName, edp.edpName]).toEqual(['Demo Carbon Accounting Provider', 'Meter Co']);
  });

  it('parses RESOURCE_SERVERS as a trimmed comma-separated list of https URLs, skipping empty entries', () => {
    const config = loadConfig({ RESOURCE_SERVERS: ' https://edp.example/api , https://cap.example/data/x,,' }, CWD);
    expect(config.resourceServers).toEqual(['https://edp.example/api', 'https://cap.example/data/x']);
  });

  it('parses LICENSES as a trimmed comma-separated list', () => {
    expect(loadConfig({ LICENSES: 'emissions-cap-fsp, https://registry.example/l/2' }, CWD).licenses)
      .toEqual(['emissions-cap-fsp', 'https://registry.example/l/2']);
  });

  it('accepts ACCESS_TOKEN_TTL up to the scheme maximum of 3600', () => {
    expect(loadConfig({ ACCESS_TOKEN_TTL: '3600' }, CWD).accessTokenTtl).toBe(3600);
    expect(loadConfig({ ACCESS_TOKEN_TTL: '1' }, CWD).accessTokenTtl).toBe(1);
  });

  it('normalises an origin given with a trailing slash', () => {
    expect(loadConfig({ ISSUER: 'https://auth.example:9443/' }, CWD).issuer).toBe('https://auth.example:9443');
  });
});

describe('loadConfig refuses a bad value with a one-line ConfigError naming the variable', () => {
  const cases: Array<{ name: string; env: Record<string, string>; variable: string }> = [
    { name: 'ISSUER over plain http', env: { ISSUER: 'http://localhost:8443' }, variable: 'ISSUER' },
    { name: 'ISSUER that is not a URL', env: { ISSUER: 'localhost:8443' }, variable: 'ISSUER' },
    { name: 'ISSUER with a path', env: { ISSUER: 'https://auth.example/perseus' }, variable: 'ISSUER' },
    { name: 'ISSUER with a query', env: { ISSUER: 'https://auth.example/?x=1' }, variable: 'ISSUER' },
    { name: 'ISSUER with credentials', env: { ISSUER: 'https://user:pw@auth.example' }, variable: 'ISSUER' },
    { name: 'MTLS_ORIGIN over plain http', env: { MTLS_ORIGIN: 'http://localhost:8444' }, variable: 'MTLS_ORIGIN' },
    { name: 'MTLS_ORIGIN with a path', env: { MTLS_ORIGIN: 'https://localhost:8444/mtls' }, variable: 'MTLS_ORIGIN' },
    { name: 'the same origin for ISSUER and MTLS_ORIGIN', env: { ISSUER: 'https://auth.example', MTLS_ORIGIN: 'https://auth.example:443/' }, variable: 'MTLS_ORIGIN' },
    { name: 'PUBLIC_PORT=abc', env: { PUBLIC_PORT: 'abc' }, variable: 'PUBLIC_PORT' },
    { name: 'PUBLIC_PORT=70000', env: { PUBLIC_PORT: '70000' }, variable: 'PUBLIC_PORT' },
    { name: 'PUBLIC_PORT=-1', env: { PUBLIC_PORT: '-1' }, variable: 'PUBLIC_PORT' },
    { name: 'MTLS_PORT=65536', env: { MTLS_PORT: '65536' }, variable: 'MTLS_PORT' },
    { name: 'RESOURCE_SERVERS with a non-https entry', env: { RESOURCE_SERVERS: 'https://edp.example/api,http://cap.example/api' }, variable: 'RESOURCE_SERVERS' },
    { name: 'RESOURCE_SERVERS with a non-URL entry', env: { RESOURCE_SERVERS: 'edp.example' }, variable: 'RESOURCE_SERVERS' },
    { name: 'an unknown OPERATOR_ROLE', env: { OPERATOR_ROLE: 'financial-service-provider' }, variable: 'OPERATOR_ROLE' },
    { name: 'ACCESS_TOKEN_TTL=7200 (over the 3600 s scheme maximum)', env: { ACCESS_TOKEN_TTL: '7200' }, variable: 'ACCESS_TOKEN_TTL' },
    { name: 'ACCESS_TOKEN_TTL=0', env: { ACCESS_TOKEN_TTL: '0' }, variable: 'ACCESS_TOKEN_TTL' },
    { name: 'ACCESS_TOKEN_TTL=10m', env: { ACCESS_TOKEN_TTL: '10m' }, variable: 'ACCESS_TOKEN_TTL' },
    { name: 'LICENSES with no license', env: { LICENSES: ' , ' }, variable: 'LICENSES' },
    { name: 'EDP_PRIVACY_POLICY_URL over plain http', env: { EDP_PRIVACY_POLICY_URL: 'http://edp.example/privacy' }, variable: 'EDP_PRIVACY_POLICY_URL' },
  ];

  for (const { name, env, variable } of cases) {
    it(`refuses ${name} with a ConfigError for ${variable}`, () => {
      const error = configErrorFor(env);
      expect(error.variable).toBe(variable);
      expect(error.code).toBe('invalid_configuration');
      expect(error.message.startsWith(`${variable}: `)).toBe(true);
      expect(error.message).not.toMatch(/[\r\n]/);
    });
  }

  it('quotes the offending value in the message', () => {
    expect(configErrorFor({ PUBLIC_PORT: '70000' }).message).toContain('"70000"');
    expect(configErrorFor({ ISSUER: 'http://x' }).message).toContain('"http://x"');
    expect(configErrorFor({ RESOURCE_SERVERS: 'https://ok.example,http://bad.example' }).message).toContain('"http://bad.example"');
  });
});
