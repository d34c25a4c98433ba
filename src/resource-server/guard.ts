// permissionGuard: the koa middleware a Perseus data provider puts in front of its API.
//
// What the scheme asks of a resource server ("OAuth with Member Identity Certificates 1.0"):
//  - the client authenticates with its IB1 member certificate (mutual TLS), verified against the
//    Client CA; behind a TLS-terminating proxy the certificate arrives in a header believed only
//    from a configured proxy;
//  - tokens are bound to the client: the presented certificate's application URL (its single URI
//    subjectAltName) must equal the token's `client_id`, and the certificate's SHA-256 thumbprint
//    must equal the token's `cnf.x5t#S256` (RFC 8705);
//  - licenses are the OAuth scopes: an API serves only the licenses it was built for, and the
//    client's certificate must hold the role the license requires (ib1Roles extension);
//  - withdrawal ("Withdrawal of Permission 1.0"): data APIs must fail no later than 60 minutes
//    after a withdrawal. Introspection answers are cached at most 60 s (introspection.ts).
//
// Errors follow RFC 6750 section 3: 400 invalid_request, 401 invalid_token, 403
// insufficient_scope, with a `WWW-Authenticate: Bearer` challenge. When the authorization server
// cannot be asked the guard fails closed: 503 with Retry-After.
import type { Context, Middleware, Next } from 'koa';

import { LicenseCatalog } from '../consent/licenses.ts';
import { verdictOf, verifyClientCertificate } from '../http/client-certificate.ts';
import { proxyClientCertificate, type ProxyClientCertificateOptions } from '../http/proxy-client-certificate.ts';
import { roleUrl } from '../pki/dev-trust-framework.ts';
import type { ClientCertificateVerifier } from '../pki/revocation-list-cache.ts';
import { Introspector, IntrospectionUnavailableError, type IntrospectionAnswer, type IntrospectionOptions } from './introspection.ts';

export interface PermittedMeter {
  /** MPAN (electricity) or MPRN (gas). */
  id: string;
  type: 'electricity' | 'gas';
  ukPostcodeOutcode: string;
}

/** What the handler learns from the guard, on `ctx.state.permission`. */
export interface Permission {
  /** Opaque account of the SME, stable per client. */
  account: string;
  /** The client's application URL (token `client_id` == certificate URL). */
  clientId: string;
  /** The license URL the token was granted under. */
  license: string;
  /** Only the meters the SME chose. */
  meters: PermittedMeter[];
  /** Whole UTC months the provider may serve: from inclusive, to exclusive (first day of the current month). */
  dataPeriod: { from: Date; to: Date };
  /** When the access token expires. */
  expires: Date;
  /** When the permission itself expires, if the authorization server said. */
  permissionExpires?: Date;
}

export interface PermissionGuardOptions {
  /** Verifies the presented chain against the Client CA: a ClientCertificateTrust, or one wrapped by withRevocationCheck. */
  trust: ClientCertificateVerifier;
  /** When the API sits behind a TLS-terminating proxy: where the proxy puts the client certificate. */
  proxyCertificate?: ProxyClientCertificateOptions;
  /** The authorization server's introspection endpoint and this resource server's own member certificate. */
  introspection: IntrospectionOptions;
  /** License URLs this API serves. */
  licenses: string[];
  /**
   * Role each license requires of the client (license URL -> role URL or role label). Default:
   * the license's `to` role in the bundled Registry snapshot (src/consent/licenses.ts).
   */
  licenseRoles?: Record<string, string>;
  /** Seconds an introspection answer is reused. Default 30, at most 60, never past the token's exp; 0 disables. */
  cacheSeconds?: number;
  cacheSize?: number;
  /** When set, the introspection answer's `iss` must equal it. */
  issuer?: string;
  /** When set, the token's `aud` must contain it (the authorization server's resource indicator). */
  audience?: string;
  /** Retry-After (seconds) of the 503 answered when the authorization server is unreachable. Default 10. */
  retryAfterSeconds?: number;
  /** realm of the WWW-Authenticate challenge. Default "perseus". */
  realm?: string;
  now?: () => Date;
  /** Told why a request was refused (never a token). */
  log?: (line: Record<string, unknown>) => void;
}

export type PermissionGuard = Middleware & {
  /** Forgets cached introspection answers. */
  clearCache(): void;
  /** Closes the connections to the authorization server. */
  close(): void;
  readonly clientId: string;
};

const PERMISSION = 'permission';
/** A parsed application/x-www-form-urlencoded body, left for the handler (the guard had to read it). */
export const FORM_BODY = 'formBody';

/** The permission the guard found for this request (throws if the guard did not run). */
export function permissionOf(ctx: { state: Record<string, unknown> }): Permission {
  const permission = ctx.state[PERMISSION] as Permission | undefined;
  if (!permission) throw new Error('no permission on this request: is permissionGuard in front of this route?');
  return permission;
}

// RFC 6750 section 2.1: b64token.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const MAX_FORM_BYTES = 64 * 1024;

class Refusal {
  readonly status: 400 | 401 | 403;
  readonly error: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | undefined;
  readonly description: string;
  constructor(status: Refusal['status'], error: Refusal['error'], description: string) {
    this.status = status;
    this.error = error;
    this.description = description;
  }
}

/** A quoted-string safe for a challenge: printable ASCII without `"` and `\`. */
function quoted(value: string): string {
  return `"${value.replace(/[^\x20-\x7e]|["\\]/g, ' ')}"`;
}

function isoDate(value: unknown): Date | undefined {
  if (typeof value !== 'string') return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function parseMeters(value: unknown): PermittedMeter[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const meters: PermittedMeter[] = [];
  for (const item of value as Array<Record<string, unknown>>) {
    if (!item || typeof item.id !== 'string' || (item.type !== 'electricity' && item.type !== 'gas') || typeof item.ukPostcodeOutcode !== 'string') return undefined;
    meters.push({ id: item.id, type: item.type, ukPostcodeOutcode: item.ukPostcodeOutcode });
  }
  return meters;
}

/** The role each license needs, from the options or the bundled Registry snapshot; unknown licenses stop start-up. */
function rolesOf(licenses: string[], configured: Record<string, string> = {}): Map<string, string> {
  const missing = licenses.filter((license) => !configured[license]);
  const catalog = missing.length ? LicenseCatalog.load({ selection: missing, operatorRole: 'energy-data-provider' }) : undefined;
  return new Map(licenses.map((license) => [license, roleUrl(configured[license] ?? catalog!.get(license)!.requiredRole)]));
}

export function permissionGuard(options: PermissionGuardOptions): PermissionGuard {
  if (options.licenses.length === 0) throw new Error('permissionGuard needs at least one license URL');
  const roles = rolesOf(options.licenses, options.licenseRoles);
  const now = options.now ?? (() => new Date());
  const realm = options.realm ?? 'perseus';
  const retryAfter = String(options.retryAfterSeconds ?? 10);
  const log = options.log ?? (() => {});
  const introspector = new Introspector({ ...options.introspection, cacheSeconds: options.cacheSeconds, cacheSize: options.cacheSize, now });
  const proxy = options.proxyCertificate ? proxyClientCertificate(options.proxyCertificate) : undefined;
  const certificate = verifyClientCertificate(options.trust, now);

  function refuse(ctx: Context, refusal: Refusal): void {
    ctx.status = refusal.status;
    ctx.set('Cache-Control', 'no-store');
    const challenge = [`Bearer realm=${quoted(realm)}`];
    if (refusal.error) challenge.push(`error=${quoted(refusal.error)}`, `error_description=${quoted(refusal.description)}`);
    if (refusal.error === 'insufficient_scope') challenge.push(`scope=${quoted(options.licenses.join(' '))}`);
    ctx.set('WWW-Authenticate', challenge.join(', '));
    // Without credentials RFC 6750 gives no error code; the body says what is missing.
    ctx.body = refusal.error ? { error: refusal.error, error_description: refusal.description } : { error_description: refusal.description };
    log({ msg: 'data request refused', status: refusal.status, error: refusal.error, reason: refusal.description, path: ctx.path });
  }

  /** The bearer token, from the Authorization header only (RFC 6750 2.1); 2.2 and 2.3 are refused. */
  async function bearerToken(ctx: Context): Promise<string> {
    if (new URLSearchParams(ctx.querystring).has('access_token')) {
      throw new Refusal(400, 'invalid_request', 'send the access token in the Authorization: Bearer header, never in the URL');
    }
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD' && ctx.is('application/x-www-form-urlencoded')) {
      const form = await readForm(ctx);
      if (form.has('access_token')) throw new Refusal(400, 'invalid_request', 'send the access token in the Authorization: Bearer header, never in the body');
      ctx.state[FORM_BODY] = form;
    }
    const values = ctx.req.headersDistinct.authorization ?? [];
    if (values.length > 1) throw new Refusal(400, 'invalid_request', 'more than one Authorization header');
    const header = values[0];
    if (!header) throw new Refusal(401, undefined, 'an access token is required in the Authorization: Bearer header');
    const match = /^Bearer +(.+)$/i.exec(header.trim());
    if (!match) throw new Refusal(401, undefined, 'the Authorization header must use the Bearer scheme');
    if (!B64TOKEN.test(match[1])) throw new Refusal(400, 'invalid_request', 'the bearer token is malformed');
    return match[1];
  }

  /** Every check of the introspection answer against this request; returns the permission. */
  function permissionFrom(answer: IntrospectionAnswer, ctx: Context): Permission {
    const verdict = verdictOf(ctx);
    if (!verdict?.ok) throw new Refusal(401, 'invalid_token', 'client certificate refused');
    if (answer.active !== true) throw new Refusal(401, 'invalid_token', 'the access token is not active (expired, revoked or the permission was withdrawn)');
    // A refresh token introspects as active too, but without token_type; only access tokens open data.
    if (typeof answer.token_type !== 'string' || answer.token_type.toLowerCase() !== 'bearer') {
      throw new Refusal(401, 'invalid_token', 'the token is not an access token');
    }
    const exp = typeof answer.exp === 'number' ? answer.exp : undefined;
    if (exp === undefined || exp * 1000 <= now().getTime()) throw new Refusal(401, 'invalid_token', 'the access token has expired');
    if (answer.client_id !== verdict.applicationUrl) {
      throw new Refusal(401, 'invalid_token', 'the access token was issued to another client application than the one whose certificate was presented');
    }
    const cnf = answer.cnf as Record<string, unknown> | undefined;
    if (cnf && typeof cnf === 'object' && cnf['x5t#S256'] !== undefined && cnf['x5t#S256'] !== verdict.thumbprintS256) {
      throw new Refusal(401, 'invalid_token', 'the access token is bound to another certificate than the one presented');
    }
    if (options.issuer !== undefined && answer.iss !== options.issuer) throw new Refusal(401, 'invalid_token', 'the access token is from another issuer');
    if (options.audience !== undefined) {
      const aud = Array.isArray(answer.aud) ? answer.aud : [answer.aud];
      if (!aud.includes(options.audience)) throw new Refusal(401, 'invalid_token', 'the access token is not meant for this API');
    }
    const scopes = typeof answer.scope === 'string' ? answer.scope.split(' ').filter(Boolean) : [];
    const license = typeof answer.license === 'string' ? answer.license : scopes.find((s) => roles.has(s));
    if (!license || !roles.has(license) || (scopes.length > 0 && !scopes.includes(license))) {
      throw new Refusal(403, 'insufficient_scope', 'the access token was not granted under a license this API serves');
    }
    const role = roles.get(license)!;
    if (!verdict.roles.includes(role)) {
      throw new Refusal(403, 'insufficient_scope', `the client certificate does not hold the role ${role} that the license requires`);
    }
    const period = answer.data_period as Record<string, unknown> | undefined;
    const from = isoDate(period?.from);
    const to = isoDate(period?.to);
    const meters = parseMeters(answer.meters);
    if (typeof answer.account !== 'string' || !from || !to || !meters) {
      throw new Refusal(401, 'invalid_token', 'the access token carries no Perseus permission (account, meters, data_period)');
    }
    const permissionExpires = isoDate(answer.permission_expires);
    return {
      account: answer.account, clientId: verdict.applicationUrl, license, meters, dataPeriod: { from, to },
      expires: new Date(exp * 1000), ...(permissionExpires ? { permissionExpires } : {}),
    };
  }

  async function guard(ctx: Context, next: Next): Promise<void> {
    let token: string;
    try {
      token = await bearerToken(ctx);
    } catch (error) {
      if (error instanceof Refusal) return refuse(ctx, error);
      throw error;
    }
    const verdict = verdictOf(ctx);
    if (!verdict?.ok) {
      return refuse(ctx, new Refusal(401, 'invalid_token', verdict ? `client certificate refused: ${verdict.message}` : 'a client certificate is required'));
    }
    let answer: IntrospectionAnswer;
    try {
      answer = await introspector.introspect(token);
    } catch (error) {
      if (!(error instanceof IntrospectionUnavailableError)) throw error;
      log({ msg: 'introspection unavailable: refusing data requests', reason: error.message });
      ctx.status = 503;
      ctx.set('Retry-After', retryAfter);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { error: 'temporarily_unavailable', error_description: 'the authorization server cannot be reached to check the access token; try again later' };
      return;
    }
    try {
      ctx.state[PERMISSION] = permissionFrom(answer, ctx);
    } catch (error) {
      if (error instanceof Refusal) return refuse(ctx, error);
      throw error;
    }
    await next();
  }

  const middleware = async function permissionGuard(ctx: Context, next: Next) {
    const verifyThenGuard = () => certificate(ctx, () => guard(ctx, next));
    if (proxy) await proxy(ctx, verifyThenGuard);
    else await verifyThenGuard();
  };
  return Object.assign(middleware, {
    clearCache: () => introspector.clear(),
    close: () => introspector.close(),
    clientId: introspector.clientId,
  });
}

async function readForm(ctx: Context): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw new Refusal(400, 'invalid_request', 'form body too large');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
