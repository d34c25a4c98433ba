import { parse as parseQuery, type ParsedUrlQuery } from 'node:querystring';
import type { IncomingMessage } from 'node:http';

import { decodeProtectedHeader } from 'jose';
import type { Context, Middleware } from 'koa';
import type Provider from 'oidc-provider';

import type { AdapterPayload, OidcAdapter } from '../adapters/types.ts';
import { verdictOf } from '../http/client-certificate.ts';

/**
 * Token introspection (RFC 7662) for the operator's resource servers, answered here instead of
 * by the library's router for the requests data providers actually send: a form with `token`,
 * `client_id` (the certificate's application URL) and optionally `token_type_hint`.
 *
 * Why: introspection is the hottest machine call (every data request of a resource server that
 * does not cache). The library's pipeline re-authenticates the client through its metadata
 * schema, looks the token up as an access token AND a refresh token in parallel, and runs a
 * router and a dozen middlewares; profiles showed it at most of the request's CPU (bench/).
 *
 * What stays the same: the answer. Tokens and grants are read through the library's own models
 * (`AccessToken.find`, `RefreshToken.find`, `Grant.find`), so validity, expiry and consumption
 * are the library's rules, and the body is assembled exactly as the library's introspection
 * action does (oidc-provider 9 lib/actions/introspection.js: same members, same order). On the
 * embedded store an access token and its grant are read in one statement (the adapter's
 * findWithGrant, one read transaction instead of two); the checks made on them are the same.
 * test/introspection/ compares this path with the library's, request for request.
 *
 * Everything else — a malformed request, duplicated or unknown parameters, another client_id, a
 * JWT-shaped token, a request for a JWT answer — is handed to the library untouched: the body is
 * read without ending the stream and pushed back (`unshift`) before the library reads it, so
 * its errors stay the single source of truth.
 *
 * Preconditions (composed before this in server.ts): the client certificate was verified and
 * the client is one of RESOURCE_SERVERS (introspectionGate). Clients are never pairwise here
 * (certificates-and-clients.ts makes every client `public`), so `sub` is the account id.
 */
export interface IntrospectionOptions {
  provider: Provider;
  /** The introspection route, e.g. '/introspect'. */
  path: string;
}

/** The library's own body limit (lib/shared/selective_body.js). */
const BODY_LIMIT = 56 * 1024;
const KNOWN_PARAMS = new Set(['token', 'token_type_hint', 'client_id']);
const HINTS = new Set([
  'access_token', 'refresh_token',
  'urn:ietf:params:oauth:token-type:access_token', 'urn:ietf:params:oauth:token-type:refresh_token',
]);

/** What the library's models give us, for the members the answer reads. */
interface FoundToken {
  kind: string;
  isValid: boolean;
  grantId?: string;
  accountId?: string;
  clientId?: string;
  extra?: Record<string, unknown>;
  exp?: number;
  iat?: number;
  sid?: string;
  jti?: string;
  aud?: unknown;
  scope?: string;
  rar?: unknown;
  tokenType?: string;
  jkt?: string;
  'x5t#S256'?: string;
  isSenderConstrained(): boolean;
}

interface FoundGrant {
  isExpired: boolean;
  clientId?: string;
  accountId?: string;
}

interface ModelClass<T> {
  find(value: string, options?: { ignoreExpiration?: boolean }): Promise<T | undefined>;
}

/**
 * The library's JWT check (lib/shared/reject_structured_tokens.js) says "JWT" when the first
 * dot-separated part decodes to a JSON object. Such a part starts, after optional whitespace
 * (which the decoder strips), with the base64url of `{`, space, tab/LF or CR: e, I, C or D. Only
 * those tokens pay for the exact check; opaque tokens starting otherwise cannot be JWTs.
 */
function looksLikeJwt(token: string): boolean {
  if (!/^\s*[eICD]/.test(token)) return false;
  try {
    return !!decodeProtectedHeader(token);
  } catch {
    return false;
  }
}

/**
 * Reads a body of `length` bytes without ending the stream, so that it can be pushed back with
 * `unshift` for the library. Resolves undefined when the stream ends early or errors (the
 * library then sees the same stream state and answers).
 */
async function peekBody(req: IncomingMessage, length: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  while (size < length) {
    const chunk = req.read() as Buffer | null;
    if (chunk !== null) {
      chunks.push(chunk);
      size += chunk.length;
      continue;
    }
    if (req.readableEnded || req.destroyed) break;
    const more = await new Promise<boolean>((resolve) => {
      const done = (value: boolean) => () => {
        req.off('readable', onReadable).off('end', onEnd).off('close', onEnd).off('error', onEnd);
        resolve(value);
      };
      const onReadable = done(true);
      const onEnd = done(false);
      req.once('readable', onReadable).once('end', onEnd).once('close', onEnd).once('error', onEnd);
    });
    if (!more) break;
  }
  const body = Buffer.concat(chunks, size);
  if (size !== length) {
    if (size > 0 && !req.readableEnded) req.unshift(body);
    return undefined;
  }
  return body;
}

/** The three parameters, when the form is one this path answers; undefined hands it to the library. */
function plainRequest(params: ParsedUrlQuery, clientId: string): { token: string; hint?: string } | undefined {
  for (const key of Object.keys(params)) if (!KNOWN_PARAMS.has(key)) return undefined;
  const { token, token_type_hint: hint, client_id: givenClientId } = params;
  if (typeof token !== 'string' || token === '' || givenClientId !== clientId) return undefined;
  if (hint !== undefined && (typeof hint !== 'string' || !HINTS.has(hint))) return undefined;
  if (looksLikeJwt(token)) return undefined;
  return { token, hint };
}

/** The model's adapter, as the library configured it (the instrumented, recording store). */
interface StoredReader {
  adapter: Pick<OidcAdapter, 'find' | 'findWithGrant'>;
}

/**
 * A stored payload in the one shape this server writes (opaque format, numeric iat and exp, no
 * nbf, no session binding, the model's own kind and jti). For it, the library's `Model.find`
 * (opaque verify, assertPayload with clockTolerance, instantiate, checkSessionBinding) reduces
 * to "exp in the future", which `validity` decides without building a model: ~20 µs of the
 * ~100 µs an introspection cost (bench/). Any other shape is left to the library's model.
 */
function plainPayload(stored: Record<string, unknown>, kind: string, id: string | undefined): boolean {
  return stored.kind === kind && (id === undefined || stored.jti === id)
    && typeof stored.iat === 'number' && typeof stored.exp === 'number' && stored.nbf === undefined
    && !('jwt' in stored) && !('jwt-ietf' in stored) && !('paseto' in stored) && !('format' in stored)
    && !stored.expiresWithSession && (stored.iss === undefined || typeof stored.iss === 'string')
    && (stored.aud === undefined || typeof stored.aud === 'string');
}

const epochNow = () => Math.floor(Date.now() / 1000);

/** A plain stored access token as the answer reads it (the model's members, same names). */
function tokenFromPayload(stored: Record<string, unknown>): FoundToken {
  const token = stored as unknown as FoundToken;
  return {
    ...token,
    kind: 'AccessToken',
    isValid: (stored.exp as number) > epochNow(),
    tokenType: stored.jkt ? 'DPoP' : 'Bearer',
    isSenderConstrained: () => !!(stored.jkt || stored['x5t#S256']),
  };
}

/** What findToken found, and the token's Grant when the store read both at once. */
interface Found {
  token: FoundToken | undefined;
  /** Present only when read with the token (findWithGrant): the stored Grant, or undefined. */
  grant?: { stored: AdapterPayload | undefined };
}

/** The library's findToken: the hinted kind first; an access token wins over a refresh token. */
async function findToken(provider: Provider, token: string, hint: string | undefined): Promise<Found> {
  const accessTokens = provider.AccessToken as unknown as ModelClass<FoundToken> & StoredReader;
  const refreshTokens = provider.RefreshToken as unknown as ModelClass<FoundToken>;
  const accessToken = async (): Promise<Found | undefined> => {
    const { adapter } = accessTokens;
    // One look-up for the token and its grant where the store can (the embedded store).
    const both = adapter.findWithGrant ? await adapter.findWithGrant(token) : undefined;
    const stored = adapter.findWithGrant ? both?.token : await adapter.find(token);
    if (!stored) return undefined;
    if (!plainPayload(stored, 'AccessToken', token)) {
      const found = await accessTokens.find(token);
      return found && { token: found };
    }
    return { token: tokenFromPayload(stored), ...(both ? { grant: { stored: both.grant } } : {}) };
  };
  const refreshToken = async (): Promise<Found | undefined> => {
    const found = await refreshTokens.find(token);
    return found && { token: found };
  };
  if (hint === 'refresh_token' || hint === 'urn:ietf:params:oauth:token-type:refresh_token') {
    return (await refreshToken()) ?? (await accessToken()) ?? { token: undefined };
  }
  return (await accessToken()) ?? (await refreshToken()) ?? { token: undefined };
}

/**
 * `Grant.find(id, { ignoreExpiration: true })`, read directly when the stored grant is plain.
 * `prefetched`: the stored grant findWithGrant read with the token (then no second look-up).
 */
async function findGrant(provider: Provider, grantId: string, prefetched?: { stored: AdapterPayload | undefined }): Promise<FoundGrant | undefined> {
  const grants = provider.Grant as unknown as ModelClass<FoundGrant> & StoredReader;
  const stored = prefetched ? prefetched.stored : await grants.adapter.find(grantId);
  if (!stored) return undefined;
  if (!plainPayload(stored, 'Grant', undefined)) return grants.find(grantId, { ignoreExpiration: true });
  return { isExpired: (stored.exp as number) <= epochNow(), clientId: stored.clientId as string | undefined, accountId: stored.accountId as string | undefined };
}

/** The answer for a token, as lib/actions/introspection.js renderTokenResponse builds it. */
async function answerFor(provider: Provider, { token, grant: prefetched }: Found, value: string): Promise<Record<string, unknown>> {
  const inactive = { active: false };
  if (!token?.isValid) return inactive;
  if (token.grantId) {
    const grant = await findGrant(provider, token.grantId, prefetched);
    if (!grant || grant.isExpired || grant.clientId !== token.clientId || grant.accountId !== token.accountId) return inactive;
  }
  if (token.kind !== 'AccessToken' && token.kind !== 'RefreshToken') return inactive;
  const body: Record<string, unknown> = { active: false };
  if (token.accountId) body.sub = token.accountId;
  Object.assign(body, {
    ...token.extra,
    active: true,
    client_id: token.clientId,
    exp: token.exp,
    iat: token.iat,
    sid: token.sid,
    iss: provider.issuer,
    // Omitted for opaque tokens, whose jti is the token itself.
    jti: token.jti !== value ? token.jti : undefined,
    aud: token.aud,
    authorization_details: undefined,
    scope: token.scope || undefined,
    cnf: token.isSenderConstrained() ? {} : undefined,
    token_type: token.kind !== 'RefreshToken' ? token.tokenType : undefined,
  });
  const cnf = body.cnf as Record<string, string> | undefined;
  if (cnf && token['x5t#S256']) cnf['x5t#S256'] = token['x5t#S256'];
  if (cnf && token.jkt) cnf.jkt = token.jkt;
  return body;
}

function wantsJwtAnswer(ctx: Context): boolean {
  return ctx.get('accept').includes('application/token-introspection+jwt');
}

export function introspectTokens(options: IntrospectionOptions): Middleware {
  const { provider, path } = options;
  return async function introspectTokens(ctx, next) {
    if (ctx.path !== path || ctx.method !== 'POST' || !ctx.is('application/x-www-form-urlencoded') || wantsJwtAnswer(ctx)) return next();
    const verdict = verdictOf(ctx);
    const length = ctx.request.length;
    // Chunked or oversized bodies, a charset other than UTF-8: the library's reading applies.
    if (!verdict?.ok || length === undefined || length === 0 || length > BODY_LIMIT || (ctx.request.charset && ctx.request.charset !== 'utf-8')) return next();
    const body = await peekBody(ctx.req, length);
    if (body === undefined) return next();
    const request = plainRequest(parseQuery(body.toString('utf8')), verdict.applicationUrl);
    if (!request) {
      // Synchronously after the last read, before the stream could emit 'end'.
      ctx.req.unshift(body);
      return next();
    }
    const found = await findToken(provider, request.token, request.hint);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await answerFor(provider, found, request.token);
  };
}
