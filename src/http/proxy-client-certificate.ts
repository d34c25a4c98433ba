// Client certificates forwarded by a TLS-terminating proxy in a header. Believed only from the trusted
// proxies; the header is stripped from everyone else. The parsed chain is left on ctx.state for the
// certificate middleware, which verifies it exactly as it would a chain from our own TLS socket.
import { X509Certificate } from 'node:crypto';

import type { Context, Middleware } from 'koa';

import { type TrustedProxies, stripHeaders } from './trusted-proxies.ts';

/** Header names used by common proxies. Every one carries URL-encoded PEM. */
export const CLIENT_CERTIFICATE_HEADERS = {
  /** AWS ALB, mTLS verify mode: the leaf only. */
  awsAlbLeaf: 'x-amzn-mtls-clientcert-leaf',
  /** AWS ALB, mTLS passthrough mode: the whole chain the client sent, leaf first. */
  awsAlbChain: 'x-amzn-mtls-clientcert',
  /** nginx: `proxy_set_header X-SSL-Client-Escaped-Cert $ssl_client_escaped_cert;` */
  nginx: 'x-ssl-client-escaped-cert',
} as const;

/**
 * Headers stripped from untrusted peers whatever the configuration, so that nothing downstream can
 * be fooled by one (the AWS ALB also sends serial, issuer, subject and validity headers).
 */
const KNOWN_CERTIFICATE_HEADERS = [
  ...Object.values(CLIENT_CERTIFICATE_HEADERS),
  'x-amzn-mtls-clientcert-serial-number', 'x-amzn-mtls-clientcert-issuer', 'x-amzn-mtls-clientcert-subject',
  'x-amzn-mtls-clientcert-validity', 'ssl-client-cert', 'ssl-client-escaped-cert', 'x-ssl-client-cert',
  'x-client-cert', 'x-client-certificate', 'client-cert', 'client-cert-chain', 'x-forwarded-client-cert',
  'x-forwarded-tls-client-cert', 'x-ssl-client-verify', 'ssl-client-verify',
];

export interface ProxyClientCertificateOptions {
  proxies: TrustedProxies;
  /** The header with the client certificate (URL-encoded PEM; more than one block: leaf first). */
  header: string;
  /** An optional header with the intermediates (or the whole chain, leaf first), URL-encoded PEM. */
  chainHeader?: string;
  /** Told why a header from a trusted proxy was unusable (never the header's value). */
  log?: (line: Record<string, unknown>) => void;
}

export const PRESENTED_CHAIN = 'presentedChain';
export const PROXY_CERTIFICATE_PROBLEM = 'proxyCertificateProblem';

/**
 * The chain a trusted proxy forwarded (leaf first; [] when it forwarded none or garbage), or undefined
 * when the request did not come from a trusted proxy (then the TLS socket's own chain applies).
 */
export function presentedChainOf(ctx: { state: Record<string, unknown> }): X509Certificate[] | undefined {
  const chain = ctx.state[PRESENTED_CHAIN];
  return Array.isArray(chain) ? (chain as X509Certificate[]) : undefined;
}

// A generous bound: a leaf is ~1 KiB of PEM and node's default header limit is 16 KiB.
const MAX_HEADER_LENGTH = 64 * 1024;
const MAX_CERTIFICATES = 5;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export class ProxyCertificateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProxyCertificateError';
  }
}

/**
 * Certificates from a URL-encoded PEM header value (`%20` for spaces, `%0A` for newlines; `+` is a
 * literal base64 character here, never a space, as the ALB documents). Empty value: []. Throws a
 * ProxyCertificateError on anything else that is not one or more certificates.
 */
export function certificatesFromEscapedPem(value: string): X509Certificate[] {
  if (value.trim() === '') return [];
  if (value.length > MAX_HEADER_LENGTH) throw new ProxyCertificateError(`header longer than ${MAX_HEADER_LENGTH} characters`);
  let pem: string;
  try {
    pem = decodeURIComponent(value);
  } catch {
    throw new ProxyCertificateError('header is not valid URL encoding');
  }
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new ProxyCertificateError('header holds no PEM certificate');
  if (blocks.length > MAX_CERTIFICATES) throw new ProxyCertificateError(`header holds more than ${MAX_CERTIFICATES} certificates`);
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch {
      throw new ProxyCertificateError('header holds a PEM block that is not a certificate');
    }
  });
}

/** The single value of a header; two copies are ambiguous (which would the proxy have meant?). */
function single(ctx: Context, name: string): string | undefined {
  const values = ctx.req.headersDistinct[name];
  if (!values || values.length === 0) return undefined;
  if (values.length > 1) throw new ProxyCertificateError(`header ${name} appears ${values.length} times`);
  return values[0];
}

/**
 * From a trusted proxy: parses the certificate header (and chain header) into ctx.state.presentedChain,
 * always an array, [] for none or garbage (the reason goes to ctx.state.proxyCertificateProblem and the
 * log), so the socket's own chain (the proxy's certificate, if any) is never mistaken for the client's.
 * From any other peer: strips every client-certificate header and leaves ctx.state.presentedChain unset.
 */
export function proxyClientCertificate(options: ProxyClientCertificateOptions): Middleware {
  const header = options.header.toLowerCase();
  const chainHeader = options.chainHeader?.toLowerCase();
  const strip = new Set([...KNOWN_CERTIFICATE_HEADERS, header, ...(chainHeader ? [chainHeader] : [])]);

  return async function proxyClientCertificate(ctx, next) {
    if (!options.proxies.includes(ctx.req.socket.remoteAddress)) {
      stripHeaders(ctx.req, strip);
      await next();
      return;
    }
    let chain: X509Certificate[] = [];
    try {
      const leafValue = single(ctx, header);
      const chainValue = chainHeader ? single(ctx, chainHeader) : undefined;
      const leaf = leafValue === undefined ? [] : certificatesFromEscapedPem(leafValue);
      const rest = chainValue === undefined ? [] : certificatesFromEscapedPem(chainValue);
      if (leaf.length > 0) {
        const seen = new Set<string>();
        chain = [...leaf, ...rest].filter((certificate) => !seen.has(certificate.fingerprint256) && seen.add(certificate.fingerprint256));
        if (chain.length > MAX_CERTIFICATES) throw new ProxyCertificateError(`more than ${MAX_CERTIFICATES} certificates forwarded`);
      } else if (rest.length > 0 && chainHeader && leafValue === undefined) {
        // A chain header with no leaf header: ALB passthrough configured as the chain header alone.
        chain = rest;
      }
    } catch (error) {
      chain = [];
      const problem = error instanceof ProxyCertificateError ? error.message : 'unreadable client certificate header';
      ctx.state[PROXY_CERTIFICATE_PROBLEM] = problem;
      options.log?.({ msg: 'proxy client certificate unusable', header, problem });
    }
    ctx.state[PRESENTED_CHAIN] = chain;
    await next();
  };
}
