// Which peers may speak for someone else. A TLS-terminating proxy (AWS ALB, nginx) tells us the client's
// address, scheme, host and certificate in headers; those headers are believed only from the proxies
// configured here, and stripped from every other peer before anything reads them.
import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';

import type { Middleware } from 'koa';

type Family = 'ipv4' | 'ipv6';

/**
 * An address in comparable form: brackets and IPv6 zone removed, IPv4-mapped IPv6 (`::ffff:10.1.2.3`,
 * `::ffff:a01:203`, `0:0:0:0:0:ffff:…`) turned into plain IPv4. undefined if it is not an IP address.
 */
export function normaliseAddress(raw: string | undefined): { address: string; family: Family } | undefined {
  if (!raw) return undefined;
  let address = raw.trim();
  if (address.startsWith('[') && address.endsWith(']')) address = address.slice(1, -1);
  address = address.replace(/%[\w.-]+$/, '');
  const version = isIP(address);
  if (version === 4) return { address, family: 'ipv4' };
  if (version !== 6) return undefined;
  // The WHATWG URL parser canonicalises IPv6, so every spelling of a mapped address looks the same.
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (mapped) {
    const high = parseInt(mapped[1], 16);
    const low = parseInt(mapped[2], 16);
    return { address: [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.'), family: 'ipv4' };
  }
  return { address: canonical, family: 'ipv6' };
}

export class TrustedProxyConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrustedProxyConfigError';
  }
}

/** A set of proxy addresses and CIDR ranges, IPv4 and IPv6. */
export class TrustedProxies {
  readonly #list = new BlockList();
  readonly #entries: string[];

  /** From a comma- or space-separated list such as `10.0.0.0/8,127.0.0.1,::1`; an empty list trusts nobody. */
  static parse(list: string | undefined): TrustedProxies {
    return new TrustedProxies((list ?? '').split(/[\s,]+/).filter(Boolean));
  }

  /** Throws a one-line TrustedProxyConfigError naming the first bad entry. */
  constructor(entries: readonly string[]) {
    this.#entries = [...entries];
    for (const entry of entries) {
      const [rawAddress, rawPrefix, extra] = entry.split('/');
      const parsed = normaliseAddress(rawAddress);
      const wasMapped = parsed?.family === 'ipv4' && isIP(rawAddress.replace(/^\[|\]$/g, '')) === 6;
      const maxPrefix = parsed?.family === 'ipv4' ? (wasMapped ? 128 : 32) : 128;
      if (!parsed || extra !== undefined || (rawPrefix !== undefined && !/^\d{1,3}$/.test(rawPrefix)) || Number(rawPrefix ?? 0) > maxPrefix) {
        throw new TrustedProxyConfigError(`TRUSTED_PROXIES: ${JSON.stringify(entry)} is not an IP address or CIDR range`);
      }
      if (rawPrefix === undefined) {
        this.#list.addAddress(parsed.address, parsed.family);
        continue;
      }
      let prefix = Number(rawPrefix);
      if (wasMapped) {
        // ::ffff:10.0.0.0/104 is 10.0.0.0/8.
        if (prefix < 96) throw new TrustedProxyConfigError(`TRUSTED_PROXIES: ${JSON.stringify(entry)} reaches beyond the IPv4-mapped range`);
        prefix -= 96;
      }
      this.#list.addSubnet(parsed.address, prefix, parsed.family);
    }
  }

  /** Whether `remoteAddress` (as node reports it, IPv4-mapped or not) is a trusted proxy. */
  includes(remoteAddress: string | undefined): boolean {
    const parsed = normaliseAddress(remoteAddress);
    return parsed !== undefined && this.#list.check(parsed.address, parsed.family);
  }

  get empty(): boolean {
    return this.#entries.length === 0;
  }

  toString(): string {
    return this.#entries.join(',');
  }
}

/** Headers by which a proxy speaks for the client. Stripped from every untrusted peer. */
export const FORWARDING_HEADERS = [
  'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix',
  'x-forwarded-ssl', 'x-forwarded-scheme', 'x-real-ip', 'forwarded',
] as const;

/**
 * Removes headers from a request everywhere node keeps them: the parsed `headers` and `headersDistinct`
 * and `rawHeaders`. Node builds the first two lazily from rawHeaders (using the original count), so they
 * are built first and then edited; only then is rawHeaders spliced.
 */
export function stripHeaders(req: IncomingMessage, names: Iterable<string>): void {
  const remove = new Set([...names].map((name) => name.toLowerCase()));
  const { headers, headersDistinct } = req;
  for (const name of remove) {
    delete headers[name];
    delete headersDistinct[name];
  }
  const raw = req.rawHeaders;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    if (remove.has(raw[i].toLowerCase())) raw.splice(i, 2);
  }
}

/**
 * The client address from X-Forwarded-For, read right to left: each proxy appends the peer it saw, so
 * the first address that is not a trusted proxy is the client (anything left of it the client could
 * have written itself). An entry that is not an IP address ends the walk at the proxy that reported it.
 */
export function clientAddressFrom(forwardedFor: string | undefined, peer: string, proxies: TrustedProxies): string {
  let client = peer;
  const hops = (forwardedFor ?? '').split(',').map((hop) => hop.trim()).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normaliseAddress(hops[i]);
    if (!hop) break;
    client = hop.address;
    if (!proxies.includes(hop.address)) break;
  }
  return client;
}

export const VIA_TRUSTED_PROXY = 'viaTrustedProxy';

/**
 * First middleware of an app that sits behind a proxy (with `app.proxy = true`, so that koa's
 * ctx.protocol / ctx.host / ctx.secure read X-Forwarded-Proto / X-Forwarded-Host):
 *  - from a peer that is not a trusted proxy, every forwarding header is stripped, so koa falls back to
 *    the socket (its address, and 'https' only if the socket itself is TLS);
 *  - from a trusted proxy they are kept, and ctx.ip is set to the client address found by walking
 *    X-Forwarded-For right to left past trusted proxies (koa alone would take the leftmost entry, which
 *    the client controls).
 * ctx.state.viaTrustedProxy records which case applied.
 */
export function trustedForwarding(proxies: TrustedProxies): Middleware {
  return async function trustedForwarding(ctx, next) {
    const peer = ctx.req.socket.remoteAddress ?? '';
    if (proxies.includes(peer)) {
      ctx.state[VIA_TRUSTED_PROXY] = true;
      const header = (ctx.app.proxyIpHeader || 'X-Forwarded-For').toLowerCase();
      const values = ctx.req.headersDistinct[header];
      ctx.request.ip = clientAddressFrom(values?.join(','), peer, proxies);
    } else {
      ctx.state[VIA_TRUSTED_PROXY] = false;
      stripHeaders(ctx.req, [...FORWARDING_HEADERS, (ctx.app.proxyIpHeader || 'X-Forwarded-For')]);
      ctx.request.ip = peer;
    }
    await next();
  };
}
