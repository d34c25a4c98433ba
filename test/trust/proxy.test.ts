import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  CLIENT_CERTIFICATE_HEADERS,
  certificatesFromEscapedPem,
  presentedChainOf,
  proxyClientCertificate,
} from '../../src/http/proxy-client-certificate.ts';
import { TrustedProxies, clientAddressFrom, normaliseAddress, trustedForwarding } from '../../src/http/trusted-proxies.ts';
import {
  type Issuer,
  type LeafMaterial,
  createIntermediateCa,
  createRootCa,
  issueClientLeaf,
  issueServerLeaf,
} from '../../src/pki/certificate-authority.ts';
import { ClientCertificateTrust } from '../../src/pki/client-certificate.ts';

const APP = 'https://app.example.com/apps/energy-insights';
const ALB = CLIENT_CERTIFICATE_HEADERS.awsAlbLeaf;
const ALB_CHAIN = CLIENT_CERTIFICATE_HEADERS.awsAlbChain;
const NGINX = CLIENT_CERTIFICATE_HEADERS.nginx;

let root: Issuer;
let issuer: Issuer;
let leaf: LeafMaterial;
let trust: ClientCertificateTrust;
const servers: Array<http.Server | https.Server> = [];
const problems: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  root = await createRootCa({ name: 'Test Client CA' });
  issuer = await createIntermediateCa(root, { name: 'Test Client Issuer' });
  leaf = await issueClientLeaf(issuer, { applicationUrl: APP, organisation: 'Example Bank plc', roles: [] });
  // No known intermediates: a leaf alone does not chain, so chain headers are observable.
  trust = new ClientCertificateTrust({ rootsPem: root.certificatePem });
});

afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  })));
});

/** AWS ALB encoding: URL-encoded PEM with `+`, `=` and `/` left as they are. */
function albEncode(pem: string): string {
  return encodeURIComponent(pem).replace(/%2B/g, '+').replace(/%3D/g, '=').replace(/%2F/g, '/');
}

/** nginx $ssl_client_escaped_cert: everything reserved escaped. */
function nginxEncode(pem: string): string {
  return encodeURIComponent(pem);
}

interface Seen {
  ip: string;
  protocol: string;
  host: string;
  chain: string[] | null;
  verdict: string | null;
  headers: Record<string, string | string[] | undefined>;
  rawHeaderNames: string[];
  problem: string | null;
}

/** The app under test: forwarding trust, proxy certificate, then a handler that reports what it saw. */
function appFor(proxies: TrustedProxies, options: { header: string; chainHeader?: string }): Koa {
  const app = new Koa();
  app.proxy = true;
  app.use(trustedForwarding(proxies));
  app.use(proxyClientCertificate({ proxies, ...options, log: (line) => problems.push(line) }));
  app.use(async (ctx) => {
    const chain = presentedChainOf(ctx);
    const verdict = chain ? trust.verify(chain) : undefined;
    ctx.status = verdict?.ok ? 200 : 401;
    ctx.body = {
      ip: ctx.ip,
      protocol: ctx.protocol,
      host: ctx.host,
      chain: chain ? chain.map((certificate) => certificate.subject.split('\n').at(-1) ?? '') : null,
      verdict: verdict ? (verdict.ok ? verdict.applicationUrl : verdict.code) : null,
      headers: ctx.req.headers,
      rawHeaderNames: ctx.req.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase()),
      problem: (ctx.state.proxyCertificateProblem as string | undefined) ?? null,
    } satisfies Seen;
  });
  return app;
}

async function listen(app: Koa, host: string, tls?: https.ServerOptions): Promise<{ port: number }> {
  const server = tls ? https.createServer(tls, app.callback()) : http.createServer(app.callback());
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return { port: (server.address() as AddressInfo).port };
}

async function get(host: string, port: number, headers: http.OutgoingHttpHeaders = {}, tls?: https.RequestOptions): Promise<{ status: number; seen: Seen }> {
  return new Promise((resolve, reject) => {
    const request = (tls ? https : http).request({ host, port, path: '/', headers, ...(tls ?? {}) }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        try {
          resolve({ status: response.statusCode ?? 0, seen: JSON.parse(body) as Seen });
        } catch {
          reject(new Error(`HTTP ${response.statusCode}: ${body}`));
        }
      });
    });
    request.on('error', reject);
    request.end();
  });
}

describe('TrustedProxies', () => {
  const proxies = TrustedProxies.parse('10.0.0.0/8, 127.0.0.1 ::1,2001:db8::/32,::ffff:192.168.0.0/112');

  it('matches IPv4 and IPv6 addresses and ranges, IPv4-mapped or not', () => {
    for (const address of ['10.1.2.3', '::ffff:10.1.2.3', '127.0.0.1', '::ffff:127.0.0.1', '::ffff:7f00:1', '0:0:0:0:0:ffff:7f00:1', '::1', '0:0:0:0:0:0:0:1',
      '2001:db8::42', '[2001:db8::1]', '2001:db8::9%eth0', '192.168.3.4', '::ffff:192.168.3.4']) {
      expect(proxies.includes(address), address).toBe(true);
    }
    for (const address of ['11.0.0.1', '127.0.0.2', '::2', '2001:db9::1', '192.169.0.1', '::ffff:11.0.0.1', '', undefined, 'localhost', '10.1.2.3.4']) {
      expect(proxies.includes(address), String(address)).toBe(false);
    }
  });

  it('trusts nobody when empty and refuses bad entries in one line naming them', () => {
    expect(TrustedProxies.parse('').includes('127.0.0.1')).toBe(false);
    expect(TrustedProxies.parse(undefined).empty).toBe(true);
    for (const bad of ['10.0.0.0/33', 'example.com', '10.0.0.1/8/2', '::1/129', '::ffff:10.0.0.0/64', '10.0.0.0/x']) {
      expect(() => TrustedProxies.parse(`127.0.0.1,${bad}`)).toThrow(`TRUSTED_PROXIES: ${JSON.stringify(bad)}`);
    }
  });

  it('normalises addresses', () => {
    expect(normaliseAddress('::FFFF:127.0.0.1')).toEqual({ address: '127.0.0.1', family: 'ipv4' });
    expect(normaliseAddress('[0:0::1]')).toEqual({ address: '::1', family: 'ipv6' });
    expect(normaliseAddress('nonsense')).toBeUndefined();
  });

  it('finds the client in X-Forwarded-For by walking right to left past trusted proxies', () => {
    expect(clientAddressFrom('198.51.100.9, 203.0.113.7, 10.1.2.3', '127.0.0.1', proxies)).toBe('203.0.113.7');
    expect(clientAddressFrom('10.9.9.9, 10.1.2.3', '127.0.0.1', proxies)).toBe('10.9.9.9');
    expect(clientAddressFrom(undefined, '127.0.0.1', proxies)).toBe('127.0.0.1');
    expect(clientAddressFrom('garbage, 10.1.2.3', '127.0.0.1', proxies)).toBe('10.1.2.3');
  });
});

describe('certificatesFromEscapedPem', () => {
  it('reads ALB and nginx encodings of a chain, and nothing from an empty value', () => {
    for (const encoded of [albEncode(leaf.bundlePem), nginxEncode(leaf.bundlePem)]) {
      expect(certificatesFromEscapedPem(encoded).map((certificate) => certificate.subject.split('\n').at(-1))).toEqual([`CN=${APP}`, 'CN=Test Client Issuer']);
    }
    expect(certificatesFromEscapedPem('')).toEqual([]);
  });
});

describe('proxyClientCertificate and trustedForwarding over HTTP', () => {
  let trustedPort: number;
  let untrustedPort: number;
  let nginxPort: number;
  let chainPort: number;

  beforeAll(async () => {
    const trusted = TrustedProxies.parse('127.0.0.1,10.0.0.0/8');
    const untrusted = TrustedProxies.parse('10.0.0.0/8,::1');
    ({ port: trustedPort } = await listen(appFor(trusted, { header: ALB, chainHeader: ALB_CHAIN }), '127.0.0.1'));
    ({ port: untrustedPort } = await listen(appFor(untrusted, { header: ALB, chainHeader: ALB_CHAIN }), '127.0.0.1'));
    ({ port: nginxPort } = await listen(appFor(trusted, { header: NGINX }), '127.0.0.1'));
    ({ port: chainPort } = await listen(appFor(trusted, { header: ALB_CHAIN }), '127.0.0.1'));
  });

  it('uses the ALB leaf header from a trusted proxy, with the chain header for the intermediate', async () => {
    const alone = await get('127.0.0.1', trustedPort, { [ALB]: albEncode(leaf.certificatePem) });
    expect(alone.seen.chain).toEqual([`CN=${APP}`]);
    expect(alone.seen.verdict).toBe('untrusted'); // the leaf alone does not chain here
    const { status, seen } = await get('127.0.0.1', trustedPort, { [ALB]: albEncode(leaf.certificatePem), [ALB_CHAIN]: albEncode(leaf.bundlePem) });
    expect(status).toBe(200);
    expect(seen.chain).toEqual([`CN=${APP}`, 'CN=Test Client Issuer']);
    expect(seen.verdict).toBe(APP);
  });

  it('reads the nginx escaped header and the ALB passthrough chain header', async () => {
    const nginx = await get('127.0.0.1', nginxPort, { [NGINX]: nginxEncode(leaf.bundlePem) });
    expect(nginx).toMatchObject({ status: 200, seen: { verdict: APP } });
    const chain = await get('127.0.0.1', chainPort, { [ALB_CHAIN]: albEncode(leaf.bundlePem) });
    expect(chain).toMatchObject({ status: 200, seen: { verdict: APP } });
  });

  it('strips and ignores the same headers from an untrusted address', async () => {
    const { status, seen } = await get('127.0.0.1', untrustedPort, {
      [ALB]: albEncode(leaf.bundlePem), [ALB_CHAIN]: albEncode(leaf.bundlePem), [NGINX]: nginxEncode(leaf.bundlePem),
      'x-amzn-mtls-clientcert-subject': 'CN=forged', 'x-keep-me': 'yes',
    });
    expect(status).toBe(401);
    expect(seen.chain).toBeNull();
    expect(seen.verdict).toBeNull();
    for (const name of [ALB, ALB_CHAIN, NGINX, 'x-amzn-mtls-clientcert-subject']) {
      expect(seen.headers[name], name).toBeUndefined();
      expect(seen.rawHeaderNames, name).not.toContain(name);
    }
    expect(seen.headers['x-keep-me']).toBe('yes');
  });

  it('treats garbage from a trusted proxy as no certificate, without crashing', async () => {
    const cases: Array<[http.OutgoingHttpHeaders, RegExp]> = [
      [{ [ALB]: 'not a certificate' }, /no PEM certificate/],
      [{ [ALB]: '%E0%A4%A' }, /not valid URL encoding/],
      [{ [ALB]: albEncode('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n') }, /not a certificate/],
      [{ [ALB]: albEncode(leaf.certificatePem.repeat(6)) }, /more than 5 certificates/],
      [{ [ALB]: [albEncode(leaf.certificatePem), albEncode(leaf.certificatePem)] }, /appears 2 times/],
      [{ [ALB]: albEncode(leaf.certificatePem), [ALB_CHAIN]: 'garbage' }, /no PEM certificate/],
    ];
    for (const [headers, problem] of cases) {
      const { status, seen } = await get('127.0.0.1', trustedPort, headers);
      expect(status).toBe(401);
      expect(seen.chain).toEqual([]);
      expect(seen.verdict).toBe('no_certificate');
      expect(seen.problem).toMatch(problem);
    }
    expect(problems.length).toBeGreaterThanOrEqual(cases.length);
    expect(JSON.stringify(problems)).not.toContain('BEGIN CERTIFICATE');
    // And the server still answers.
    expect((await get('127.0.0.1', trustedPort, { [ALB]: albEncode(leaf.certificatePem), [ALB_CHAIN]: albEncode(leaf.bundlePem) })).status).toBe(200);
  });

  it('gives an empty chain, not undefined, for a trusted proxy that forwards no certificate', async () => {
    const { seen } = await get('127.0.0.1', trustedPort);
    expect(seen).toMatchObject({ chain: [], verdict: 'no_certificate', problem: null });
    expect((await get('127.0.0.1', nginxPort, { [NGINX]: '' })).seen).toMatchObject({ chain: [], problem: null });
  });

  it('honours X-Forwarded-For/-Proto/-Host only from trusted proxies', async () => {
    const forwarded = { 'x-forwarded-for': '198.51.100.9, 203.0.113.7, 10.1.2.3', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'as.example.com' };
    const viaProxy = await get('127.0.0.1', trustedPort, forwarded);
    expect(viaProxy.seen).toMatchObject({ ip: '203.0.113.7', protocol: 'https', host: 'as.example.com' });

    const direct = await get('127.0.0.1', untrustedPort, { ...forwarded, 'x-real-ip': '1.2.3.4', forwarded: 'for=1.2.3.4' });
    expect(direct.seen).toMatchObject({ ip: '127.0.0.1', protocol: 'http', host: `127.0.0.1:${untrustedPort}` });
    for (const name of ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'forwarded']) {
      expect(direct.seen.headers[name], name).toBeUndefined();
    }
  });
});

describe('IPv4-mapped and IPv6 peers', () => {
  it('trusts 127.0.0.1 arriving as ::ffff:127.0.0.1 on a dual-stack listener, and ::1 over IPv6', async () => {
    const proxies = TrustedProxies.parse('127.0.0.1,::1');
    const { port } = await listen(appFor(proxies, { header: ALB, chainHeader: ALB_CHAIN }), '::');
    const headers = { [ALB]: albEncode(leaf.bundlePem), 'x-forwarded-for': '203.0.113.7' };
    const mapped = await get('127.0.0.1', port, headers);
    expect(mapped).toMatchObject({ status: 200, seen: { verdict: APP, ip: '203.0.113.7' } });
    const v6 = await get('::1', port, headers);
    expect(v6).toMatchObject({ status: 200, seen: { verdict: APP, ip: '203.0.113.7' } });

    const onlyMappedRange = TrustedProxies.parse('::ffff:127.0.0.0/104');
    const { port: other } = await listen(appFor(onlyMappedRange, { header: ALB, chainHeader: ALB_CHAIN }), '127.0.0.1');
    expect((await get('127.0.0.1', other, headers)).seen.verdict).toBe(APP);
    expect((await get('::1', port, headers)).status).toBe(200);
  });
});

describe('over HTTPS, with the proxy presenting its own client certificate', () => {
  it("uses the header's certificate, and never the proxy's own, as the client's", async () => {
    const serverCa = await createRootCa({ name: 'Server CA', keyAlgorithm: 'P-256' });
    const serverLeaf = await issueServerLeaf(serverCa, { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const proxyLeaf = await issueClientLeaf(issuer, { applicationUrl: 'https://proxy.example.com/', organisation: 'Proxy', roles: [] });
    const proxies = TrustedProxies.parse('127.0.0.1');
    const { port } = await listen(appFor(proxies, { header: ALB, chainHeader: ALB_CHAIN }), '127.0.0.1', {
      cert: serverLeaf.certificatePem, key: serverLeaf.keyPem, requestCert: true, rejectUnauthorized: false,
    });
    const tls = { ca: serverCa.certificatePem, cert: proxyLeaf.bundlePem, key: proxyLeaf.keyPem, servername: 'localhost' };
    const withHeader = await get('127.0.0.1', port, { [ALB]: albEncode(leaf.bundlePem) }, tls);
    expect(withHeader).toMatchObject({ status: 200, seen: { verdict: APP, protocol: 'https' } });
    const without = await get('127.0.0.1', port, {}, tls);
    expect(without.seen).toMatchObject({ chain: [], verdict: 'no_certificate' });
  });
});
