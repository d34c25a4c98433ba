// Property-based tests over every machine endpoint and every form a person submits. Each run
// starts from a well-formed request and breaks it: parameters dropped, repeated, replaced by random,
// oversized or oddly encoded values, unknown parameters added; the body sent as a form, unencoded,
// with invalid UTF-8, as JSON, or past the size limits; with the wrong, a bogus or no content-type;
// with another method; without or with someone else's certificate.
//
// Properties: no answer is a 5xx; the server still answers /health/live afterwards; every machine
// error is RFC 6749 JSON ({error, error_description?}) with a known code and its status; every page
// error is an HTML page.
//
// Runs are bounded (RUNS per endpoint, FC_RUNS to change). A failure prints its seed: replay it
// with FC_SEED=<seed> (and FC_SHRINK=1 to shrink the counterexample; off by default, as every
// shrinking step is an HTTPS request).
import { randomUUID } from 'node:crypto';

import fc from 'fast-check';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  type CookieJar, type RawAnswer, type World, BANK_REDIRECT, LICENSE_EMISSIONS, SME,
  dashboardSession, dashboardSignInStep, expectAlive, expectMachineAnswer, expectPageAnswer, freshCode,
  grantedTokens, newSeed, openInteraction, send, signedInInteraction, startWorld,
} from './support.ts';
import type { ClientCredentials } from '../support/trust-framework.ts';

const RUNS = Number(process.env.FC_RUNS ?? 200);
/** Forms (a password hash whenever the CSRF token survives the mutation). */
const FORM_RUNS = Number(process.env.FC_RUNS ?? 200);
const MACHINE_BODY_LIMIT = 56 * 1024; // oidc-provider's body parser
const FORM_BODY_LIMIT = 16 * 1024; // src/http/form-body.ts

type Params = Array<[string, string]>;

/** Values that have broken parsers before: empty, percent-escapes cut short, structure in a string. */
const SPECIAL_VALUES = [
  '', ' ', '%', '%%', '%zz', '%E0%A4', '%ff%fe', '%00', '\u0000', '\uFFFD', '\uD800', '🙂', 'null', 'undefined', 'true', '0', '-1',
  '1e309', '[]', '{}', '{"a":1}', '__proto__', 'constructor', '../../etc/passwd', 'https://evil.example/', 'http://bank.example/callback',
  'https://bank.example/perseus/callback#frag', 'urn:ietf:params:oauth:request_uri:abc', 'S256', 'plain', 'code', 'code id_token',
  'refresh_token', 'authorization_code', 'access_token', 'openid', 'offline_access', LICENSE_EMISSIONS, `${LICENSE_EMISSIONS} ${LICENSE_EMISSIONS}`,
  'a'.repeat(43), 'a'.repeat(129), 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', '<script>alert(1)</script>', "' OR 1=1 --", '\r\nX-Injected: 1',
];

/** Parameter names the library and this server know, and some they do not. */
const KNOWN_NAMES = [
  'client_id', 'response_type', 'redirect_uri', 'scope', 'state', 'code_challenge', 'code_challenge_method', 'request', 'request_uri',
  'resource', 'claims', 'authorization_details', 'max_age', 'prompt', 'response_mode', 'nonce', 'dpop_jkt', 'login_hint', 'acr_values',
  'grant_type', 'code', 'code_verifier', 'refresh_token', 'token', 'token_type_hint', 'client_secret', 'client_assertion',
  'client_assertion_type', 'csrf', 'email', 'password', 'decision', 'meter', '__proto__', 'constructor', 'token[]', 'token[a]', '',
];

const valueArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 3, arbitrary: fc.constantFrom(...SPECIAL_VALUES) },
  { weight: 1, arbitrary: fc.webUrl() },
  // Oversized: past the form limit, sometimes past the machine limit.
  { weight: 1, arbitrary: fc.integer({ min: 4_000, max: 70_000 }).map((n) => 'x'.repeat(n)) },
);
const nameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...KNOWN_NAMES) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
);

type Mutation =
  | { kind: 'drop'; at: number }
  | { kind: 'duplicate'; at: number; value: string | null }
  | { kind: 'replace'; at: number; value: string }
  | { kind: 'add'; name: string; value: string }
  | { kind: 'bracket'; at: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), value: fc.option(valueArb) }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), value: valueArb }),
  fc.record({ kind: fc.constant('add' as const), name: nameArb, value: valueArb }),
  fc.record({ kind: fc.constant('bracket' as const), at: fc.nat() }),
);

function mutate(base: Params, mutations: Mutation[]): Params {
  const params: Params = base.map(([k, v]) => [k, v]);
  for (const m of mutations) {
    if (m.kind === 'add') { params.push([m.name, m.value]); continue; }
    if (params.length === 0) continue;
    const i = m.at % params.length;
    if (m.kind === 'drop') params.splice(i, 1);
    else if (m.kind === 'duplicate') params.push([params[i][0], m.value ?? params[i][1]]);
    else if (m.kind === 'replace') params[i] = [params[i][0], m.value];
    else params[i] = [`${params[i][0]}[]`, params[i][1]];
  }
  return params;
}

type Encoding = 'form' | 'raw' | 'invalid-utf8' | 'json' | 'json-as-form' | 'oversized' | 'empty';
const INVALID_UTF8 = [[0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xe0, 0xa4], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xf4, 0x90, 0x80, 0x80]];

const CONTENT_TYPES: string[][] = [
  ['application/x-www-form-urlencoded; charset=utf-8'], ['application/x-www-form-urlencoded; charset=bogus'],
  ['application/x-www-form-urlencoded; charset=utf-16le'], ['application/x-www-form-urlencoded; charset=iso-8859-1'],
  ['application/x-www-form-urlencoded; charset='], ['APPLICATION/X-WWW-FORM-URLENCODED'], ['application/json'], ['text/plain'],
  ['multipart/form-data; boundary=x'], ['application/x-www-form-urlencoded', 'application/json'],
  ['application/x-www-form-urlencoded, application/json'], [';;;'], ['*/*'], [],
];

interface HostileRequest {
  method: string;
  contentTypes: string[];
  body: Buffer | undefined;
  credentials: 'own' | 'none' | 'other';
  /** Accept header values sent (browsers send text/html first). */
  accept: string[];
  /** Other headers a client should not send here: Basic or Bearer credentials, DPoP, forwarding. */
  extra: string[];
  params: Params;
  encoding: Encoding;
}

function encode(params: Params, encoding: Encoding, limit: number, bytes: number[], padding: number, splitAt: number): Buffer | undefined {
  const form = () => new URLSearchParams(params).toString();
  switch (encoding) {
    case 'form': return Buffer.from(form());
    case 'raw': return Buffer.from(params.map(([k, v]) => `${k}=${v}`).join('&'));
    case 'invalid-utf8': {
      const text = Buffer.from(params.map(([k, v]) => `${k}=${v}`).join('&'));
      const at = text.length ? splitAt % text.length : 0;
      return Buffer.concat([text.subarray(0, at), Buffer.from(bytes), text.subarray(at)]);
    }
    case 'json': return Buffer.from(JSON.stringify(Object.fromEntries(params)));
    case 'json-as-form': return Buffer.from(JSON.stringify(params));
    case 'oversized': return Buffer.from(`${form()}&pad=${'a'.repeat(limit + padding)}`);
    case 'empty': return undefined;
  }
}

/** A well-formed request made hostile in a few ways at once. */
function hostileRequest(base: () => Params, limit: number): fc.Arbitrary<HostileRequest> {
  return fc.record({
    mutations: fc.array(mutationArb, { maxLength: 4 }),
    encoding: fc.constantFrom<Encoding>('form', 'form', 'form', 'form', 'raw', 'invalid-utf8', 'json', 'json-as-form', 'oversized', 'empty'),
    contentTypes: fc.oneof({ weight: 6, arbitrary: fc.constant<string[]>(['application/x-www-form-urlencoded']) }, { weight: 3, arbitrary: fc.constantFrom(...CONTENT_TYPES) }),
    method: fc.oneof({ weight: 12, arbitrary: fc.constant('POST') }, { weight: 1, arbitrary: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD') }),
    credentials: fc.oneof({ weight: 8, arbitrary: fc.constant('own' as const) }, { weight: 1, arbitrary: fc.constantFrom('none' as const, 'other' as const) }),
    bytes: fc.oneof(fc.constantFrom(...INVALID_UTF8), fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 6 })),
    padding: fc.integer({ min: 1, max: 20_000 }),
    splitAt: fc.nat(),
    extra: fc.oneof({ weight: 6, arbitrary: fc.constant<string[]>([]) }, { weight: 1, arbitrary: fc.constantFrom<string[]>(
      ['authorization', 'Basic aHR0cHM6Ly9hOmI='], ['authorization', 'Bearer abc'], ['authorization', 'Basic %%%'], ['authorization', 'DPoP x'],
      ['dpop', 'eyJhbGciOiJFUzI1NiJ9.e30.sig'], ['dpop', ''], ['x-forwarded-for', '1.2.3.4, nonsense'], ['x-forwarded-proto', 'http'],
      ['x-amzn-mtls-clientcert-leaf', '-----BEGIN%20CERTIFICATE-----'], ['content-encoding', 'gzip'],
      ['origin', 'https://evil.example'], ['cookie', '_session=x; _interaction=y'],
    ) }),
    accept: fc.oneof({ weight: 4, arbitrary: fc.constant<string[]>([]) }, { weight: 1, arbitrary: fc.constantFrom<string[]>(['text/html'], ['text/html,application/xhtml+xml,*/*;q=0.8'], ['application/json'], ['*/*'], ['image/png'], ['text/html', 'application/json']) }),
  }).map(({ mutations, encoding, contentTypes, method, credentials, bytes, padding, splitAt, accept, extra }) => {
    const params = mutate(base(), mutations);
    const contentType = encoding === 'json' && contentTypes[0] === 'application/x-www-form-urlencoded' ? ['application/json'] : contentTypes;
    const body = method === 'GET' || method === 'HEAD' ? undefined : encode(params, encoding, limit, bytes, padding, splitAt);
    return { method, contentTypes: body ? contentType : [], body, credentials, accept, extra, params, encoding };
  });
}

function headersOf(request: HostileRequest, extra: string[] = []): string[] {
  return [...request.contentTypes.flatMap((value) => ['content-type', value]), ...request.accept.flatMap((value) => ['accept', value]), ...request.extra, ...extra];
}

/** What a failing run looked like, short enough to read. */
function show(request: HostileRequest): string {
  const params = request.params.map(([k, v]) => `${JSON.stringify(k.slice(0, 30))}=${JSON.stringify(v.slice(0, 60))}${v.length > 60 ? `…(${v.length})` : ''}`);
  return `${request.method} ${request.encoding} [${request.contentTypes.join(' | ')}] accept=[${request.accept.join(' | ')}] extra=[${request.extra.join(': ')}] cert=${request.credentials} body=${request.body?.length ?? 0}B params: ${params.join(' ')}`;
}

/** Answers seen per property (`status error`), printed after it: shows what the runs reached. */
type Tally = Map<string, number>;

function note(tally: Tally, answer: RawAnswer): void {
  const error = (answer.json as { error?: unknown } | undefined)?.error;
  const key = `${answer.status}${typeof error === 'string' ? ` ${error}` : ''}`;
  tally.set(key, (tally.get(key) ?? 0) + 1);
}

async function check<T>(name: string, arbitrary: fc.Arbitrary<T>, runs: number, predicate: (value: T, tally: Tally) => Promise<void>): Promise<void> {
  const seed = newSeed();
  const tally: Tally = new Map();
  try {
    await fc.assert(fc.asyncProperty(arbitrary, (value) => predicate(value, tally)), { numRuns: runs, seed, endOnFailure: process.env.FC_SHRINK !== '1' });
  } catch (error) {
    console.error(`[hostile/properties] ${name} failed: replay with FC_SEED=${seed} (FC_SHRINK=1 to shrink)`);
    throw error;
  }
  const seen = [...tally].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k}×${n}`).join(', ');
  console.log(`[hostile/properties] ${name}: ${runs} runs (seed ${seed}): ${seen}`);
}

describe('hostile parameters on every machine endpoint and every form', () => {
  let world: World;
  let other: ClientCredentials;
  let tokens: Awaited<ReturnType<typeof grantedTokens>>;
  let revocable: Awaited<ReturnType<typeof grantedTokens>>;

  beforeAll(async () => {
    world = await startWorld();
    other = await world.tf.member('https://directory.example/a/hostile-other', ['financial-service-provider'], 'Other Bank plc');
    tokens = await grantedTokens(world);
    // A second grant of the same permission for the revocation runs (revoking withdraws it for
    // the whole permission, so that property runs after those that use `tokens`).
    revocable = await grantedTokens(world);
  }, 90_000);
  afterAll(async () => {
    await world?.close();
  });

  /**
   * A machine endpoint's property: any hostile request gets a well-formed OAuth answer. The
   * unbroken request is sent first (or last, when it ends what the runs need) and must succeed,
   * so the runs start from a request the server accepts.
   */
  async function machineProperty(name: string, path: string, owner: () => ClientCredentials, base: () => Params,
    options: { success: number; emptySuccessBody?: boolean; afterSuccess?: () => Promise<void>; baselineLast?: boolean }) {
    const baseline = async () => {
      const answer = await send(world.agent(owner()), `${world.server.mtlsOrigin}${path}`, {
        headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(base()).toString(),
      });
      expect(answer.status, `${name} baseline: ${answer.text.slice(0, 300)}`).toBe(options.success);
      await options.afterSuccess?.();
    };
    if (!options.baselineLast) await baseline();
    await check(name, hostileRequest(base, MACHINE_BODY_LIMIT), RUNS, async (request, tally) => {
      const credentials = request.credentials === 'own' ? owner() : request.credentials === 'other' ? other : undefined;
      const answer = await send(world.agent(credentials), `${world.server.mtlsOrigin}${path}`, { method: request.method, headers: headersOf(request), body: request.body });
      note(tally, answer);
      const what = `${name}: ${show(request)}`;
      if (answer.status < 400) {
        expect(answer.status, what).toBe(options.success);
        if (options.emptySuccessBody) expect(answer.text, what).toBe('');
        else expectMachineAnswer(answer, what, request.method);
        await options.afterSuccess?.();
        return;
      }
      expectMachineAnswer(answer, what, request.method);
    });
    if (options.baselineLast) await baseline();
    await expectAlive(world);
  }

  const clientId = () => world.bank.applicationUrl;

  it('PAR', async () => {
    await machineProperty('PAR', '/par', () => world.bank, () => [
      ['client_id', clientId()], ['response_type', 'code'], ['redirect_uri', BANK_REDIRECT], ['scope', LICENSE_EMISSIONS],
      ['code_challenge', 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'], ['code_challenge_method', 'S256'], ['state', 'xyz'],
    ], { success: 201 });
  }, 90_000);

  it('token: authorization_code grant', async () => {
    let code = await freshCode(world);
    await machineProperty('token (authorization_code)', '/token', () => world.bank, () => [
      ['grant_type', 'authorization_code'], ['code', code.code], ['code_verifier', code.codeVerifier], ['redirect_uri', code.redirectUri], ['client_id', clientId()],
    ], { success: 200, afterSuccess: async () => { code = await freshCode(world); } });
  }, 90_000);

  it('token: refresh_token grant', async () => {
    await machineProperty('token (refresh_token)', '/token', () => world.bank, () => [
      ['grant_type', 'refresh_token'], ['refresh_token', tokens.refreshToken], ['client_id', clientId()],
    ], { success: 200 });
  }, 90_000);

  // DPoP is off (src/provider/profile.ts): a proof beside the certificate is ignored; were it on,
  // the library would refuse it as a second proof-of-possession. Either way no token is ever bound
  // to anything but the certificate.
  it('a valid DPoP proof never yields a DPoP-bound token', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const proof = await new SignJWT({ htm: 'POST', htu: `${world.server.mtlsOrigin}/token`, jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await exportJWK(publicKey) }).setIssuedAt().sign(privateKey);
    const answer = await send(world.agent(world.bank), `${world.server.mtlsOrigin}/token`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: proof },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refreshToken, client_id: clientId() }).toString(),
    });
    if (answer.status === 400) {
      expectMachineAnswer(answer, 'token with a DPoP proof');
      expect((answer.json as { error: string }).error).toBe('invalid_request');
      return;
    }
    expect(answer.status, answer.text).toBe(200);
    const issued = answer.json as { token_type: string; access_token: string };
    expect(issued.token_type).toBe('Bearer');
    const introspected = await send(world.agent(world.dataProvider), `${world.server.mtlsOrigin}/introspect`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: issued.access_token, client_id: world.dataProvider.applicationUrl }).toString(),
    });
    const cnf = (introspected.json as { cnf?: Record<string, string> }).cnf;
    expect(Object.keys(cnf ?? {})).toEqual(['x5t#S256']);
  });

  it('introspection', async () => {
    await machineProperty('introspect', '/introspect', () => world.dataProvider, () => [
      ['token', tokens.accessToken], ['token_type_hint', 'access_token'], ['client_id', world.dataProvider.applicationUrl],
    ], { success: 200 });
  }, 90_000);

  it('permission endpoint', async () => {
    await machineProperty('permission', '/permission', () => world.bank, () => [['token', tokens.refreshToken]], { success: 200 });
  }, 90_000);

  it('revocation', async () => {
    await machineProperty('revoke', '/revoke', () => world.bank, () => [
      ['token', revocable.refreshToken], ['token_type_hint', 'refresh_token'], ['client_id', clientId()],
    ], { success: 200, emptySuccessBody: true, baselineLast: true });
  }, 90_000);

  /**
   * A form's property: any hostile submission gets a page, and an error is an HTML page. The
   * unbroken form is submitted last and must be accepted (303), so the runs broke a form the
   * server takes.
   */
  async function formProperty(name: string, target: () => { url: string; cookie: string }, base: () => Params,
    afterAnswer?: (answer: RawAnswer) => Promise<void>) {
    const arbitrary = fc.record({
      request: hostileRequest(base, FORM_BODY_LIMIT),
      cookies: fc.oneof({ weight: 8, arbitrary: fc.constant('own' as const) }, { weight: 1, arbitrary: fc.constantFrom('none' as const, 'garbage' as const) }),
      path: fc.oneof({ weight: 8, arbitrary: fc.constant('own' as const) }, { weight: 1, arbitrary: fc.constantFrom('%E0%A4', '%', '..', 'x'.repeat(300), '%00', '🙂') }),
    });
    await check(name, arbitrary, FORM_RUNS, async ({ request, cookies, path }, tally) => {
      const { url, cookie } = target();
      const at = path === 'own' ? url : url.replace(/\/(interaction|permissions)\/[^/]+/, (_m, kind) => `/${kind}/${path === '🙂' ? encodeURIComponent(path) : path}`);
      const cookieHeader = cookies === 'own' ? cookie : cookies === 'garbage' ? '_interaction=x; _interaction.sig=y; perseus_sme=%; perseus_pre=\u00ff' : '';
      const extra = cookieHeader ? ['cookie', cookieHeader] : [];
      const answer = await send(world.agent(), at, { method: request.method, headers: headersOf(request, extra), body: request.body });
      note(tally, answer);
      expectPageAnswer(answer, `${name}: ${show(request)} cookies=${cookies} path=${path}`, request.method);
      await afterAnswer?.(answer);
    });
    const { url, cookie } = target();
    const accepted = await send(world.agent(), url, { headers: { 'content-type': 'application/x-www-form-urlencoded', cookie }, body: new URLSearchParams(base()).toString() });
    expect(accepted.status, `${name} baseline: ${accepted.text.slice(0, 300)}`).toBe(303);
    await expectAlive(world);
  }

  it('sign-in form of an authorization', async () => {
    const step = await openInteraction(world);
    await formProperty('sign-in', () => ({ url: new URL(step.action, world.server.issuer).href, cookie: step.jar.header() }),
      () => [['csrf', step.csrf], ['email', SME.email], ['password', SME.password]]);
  }, 90_000);

  it('decision form of an authorization', async () => {
    let step = await signedInInteraction(world);
    await formProperty('decision', () => ({ url: new URL(step.action, world.server.issuer).href, cookie: step.jar.header() }),
      () => [['csrf', step.csrf], ['decision', 'allow'], ...step.meters.map((m): [string, string] => ['meter', m])],
      async (answer) => {
        // A decision that was taken ends the interaction: the next run gets a fresh one.
        if (answer.status === 303) step = await signedInInteraction(world);
      });
  }, 90_000);

  it('dashboard sign-in form', async () => {
    const step = await dashboardSignInStep(world);
    await formProperty('dashboard sign-in', () => ({ url: `${world.server.issuer}/dashboard/sign-in`, cookie: step.jar.header() }),
      () => [['csrf', step.csrf], ['email', SME.email], ['password', SME.password]]);
  }, 90_000);

  it('withdraw form of the dashboard', async () => {
    const session: { jar: CookieJar; csrf: string } = await dashboardSession(world);
    await formProperty('withdraw', () => ({ url: `${world.server.issuer}/dashboard/permissions/${tokens.permissionId}/withdraw`, cookie: session.jar.header() }),
      () => [['csrf', session.csrf]]);
  }, 90_000);
});
