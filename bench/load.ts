/**
 * The load generator: its own process (bench/run.ts forks it), on 127.0.0.1 over keep-alive
 * TLS connections with real client certificates (undici Pools, `connections: N`, `pipelining: 1`).
 *
 * Protocol (IPC): the parent sends one LoadSpec; this process answers
 *   { type: 'phase', phase: 'measure' }   when the warm-up is over and the measured window starts,
 *   { type: 'result', result: LoadResult } at the end (or { type: 'error', message }), then exits.
 *
 * Closed loop (no `rate`): `connections` virtual users each send the next request as soon as the
 * previous one answered. Open loop (`rate`): requests are started on a fixed schedule whatever
 * the answers, and latency is measured from the scheduled start, so a stalled server shows in
 * the percentiles instead of silently slowing the load (no coordinated omission). Its warm-up is
 * a closed-loop run (at least `warmupSeconds`, and until every sampled token was used once), then
 * a ramp from a tenth of the rate to the full rate over `warmupSeconds`, so that the window starts
 * warm and without a queue.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { Pool } from 'undici';

import { formAction, hiddenField, meterChoices } from '../test/support/http-browser.ts';
import { Histogram, type LatencySummary } from './lib/histogram.ts';
import { shuffledThenRandom } from './lib/sample.ts';
import { nextStartMs, WARM_SAMPLE_MAX_MS } from './lib/schedule.ts';

export type LoadKind = 'static' | 'introspect' | 'refresh' | 'permission' | 'code' | 'flow';

export interface Endpoint {
  port: number;
  /** PEM of the CA that signed the server certificate (for `localhost`). */
  ca: string;
  /** Client certificate (leaf + issuer) and key; absent for the public (browser) listener. */
  cert?: string;
  key?: string;
}

export interface LoadSpec {
  name: string;
  kind: LoadKind;
  /** The mutual-TLS listener (machine endpoints), or the ceiling server. */
  mtls: Endpoint;
  /** The public listener (browser steps of the whole flow). */
  public?: Endpoint;
  connections: number;
  warmupSeconds: number;
  durationSeconds: number;
  /** Requests per second for an open-loop (rate-limited) pass. */
  rate?: number;
  timeoutMs: number;
  /** introspect/refresh/permission: JSON lines {accessToken, refreshToken}; code: one code a line. */
  dataFile?: string;
  clientId?: string;
  redirectUri?: string;
  codeVerifier?: string;
  license?: string;
  /** flow: SMEs made by `seed smes` (emails from the same rule) and their password. */
  smes?: { emails: string[]; password: string };
}

export interface LoadResult {
  name: string;
  kind: LoadKind;
  /** Completed requests (flows for kind 'flow') in the measured window. */
  completed: number;
  /** Completed with the expected answer. */
  ok: number;
  errors: number;
  statuses: Record<string, number>;
  errorSamples: string[];
  seconds: number;
  rps: number;
  latency: LatencySummary;
  /** Open loop: requests still unanswered at the end (counted in the latency at their age). */
  unfinished: number;
  /** Code exchange: the codes ran out before the end of the window. */
  exhausted: boolean;
  /** Requests sent during the warm-up and still unanswered at the end (not in the latency). */
  stalledFromWarmup: number;
  /** Age of the oldest request unanswered at the end, ms. */
  oldestUnansweredMs: number;
  /** Flow: latency of each step. */
  steps?: Record<string, LatencySummary>;
  /** CPU used by this load generator, in cores (CPU seconds / wall seconds). */
  loadCores: number;
  rate?: number;
}

class Failure extends Error {
  readonly status: string;
  constructor(status: string, message: string) {
    super(message);
    this.status = status;
  }
}

function pool(e: Endpoint, connections: number, timeoutMs: number): Pool {
  return new Pool(`https://127.0.0.1:${e.port}`, {
    connections, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: timeoutMs, bodyTimeout: timeoutMs,
    connect: { ca: e.ca, cert: e.cert, key: e.key, servername: 'localhost', rejectUnauthorized: true },
  });
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function post(p: Pool, path: string, form: URLSearchParams | string, expect: number, includes?: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }> {
  const res = await p.request({ path, method: 'POST', headers: { ...FORM, ...headers }, body: String(form) });
  const text = await res.body.text();
  if (res.statusCode !== expect) throw new Failure(String(res.statusCode), `${path}: ${res.statusCode} ${text.slice(0, 200)}`);
  if (includes && !text.includes(includes)) throw new Failure(`${res.statusCode}-unexpected`, `${path}: answer without ${includes}: ${text.slice(0, 200)}`);
  return { status: res.statusCode, text, headers: res.headers };
}

// --- the whole flow, as a browser and a bank do it ---------------------------------------------------

class CookieJar {
  readonly #cookies = new Map<string, string>();
  header(): string {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  store(setCookie: string | string[] | undefined): void {
    for (const line of [setCookie ?? []].flat()) {
      const pair = line.split(';')[0];
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }
}

function pathOf(location: string): string {
  const url = new URL(location, 'https://localhost');
  return url.pathname + url.search;
}

async function browse(p: Pool, jar: CookieJar, path: string, form?: URLSearchParams): Promise<{ status: number; location?: string; html: string }> {
  const res = await p.request({
    path, method: form ? 'POST' : 'GET', body: form ? String(form) : undefined,
    headers: { cookie: jar.header(), 'user-agent': 'perseus-bench', ...(form ? FORM : {}) },
  });
  jar.store(res.headers['set-cookie']);
  const html = await res.body.text();
  const location = res.headers.location as string | undefined;
  return { status: res.statusCode, location, html };
}

function expectRedirect(step: string, r: { status: number; location?: string; html: string }): string {
  if (r.status < 300 || r.status >= 400 || !r.location) throw new Failure(String(r.status), `${step}: expected a redirect, got ${r.status} ${r.html.slice(0, 200)}`);
  return r.location;
}

function expectPage(step: string, r: { status: number; html: string }): string {
  if (r.status !== 200) throw new Failure(String(r.status), `${step}: ${r.status} ${r.html.slice(0, 200)}`);
  return r.html;
}

interface FlowContext {
  mtls: Pool;
  pub: Pool;
  spec: LoadSpec;
  nextSme: () => { email: string; password: string };
  steps: Map<string, Histogram>;
  recording: () => boolean;
}

async function wholeFlow(c: FlowContext): Promise<void> {
  const { spec } = c;
  let t = performance.now();
  const lap = (step: string) => {
    const now = performance.now();
    if (c.recording()) {
      let h = c.steps.get(step);
      if (!h) c.steps.set(step, (h = new Histogram()));
      h.record((now - t) * 1000);
    }
    t = now;
  };
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(16).toString('base64url');
  const par = await post(c.mtls, '/par', new URLSearchParams({
    client_id: spec.clientId!, response_type: 'code', redirect_uri: spec.redirectUri!, scope: spec.license!,
    code_challenge: challenge, code_challenge_method: 'S256', state,
  }), 201, 'request_uri');
  const requestUri = (JSON.parse(par.text) as { request_uri: string }).request_uri;
  lap('par');
  const jar = new CookieJar();
  const interaction = expectRedirect('authorize', await browse(c.pub, jar, `/authorize?${new URLSearchParams({ client_id: spec.clientId!, request_uri: requestUri })}`));
  lap('authorize');
  const signIn = expectPage('sign-in page', await browse(c.pub, jar, pathOf(interaction)));
  lap('sign-in page');
  const sme = c.nextSme();
  const afterSignIn = expectRedirect('sign-in', await browse(c.pub, jar, pathOf(formAction(signIn, '/sign-in')), new URLSearchParams({
    csrf: hiddenField(signIn, 'csrf'), email: sme.email, password: sme.password,
  })));
  lap('sign-in (scrypt)');
  const consent = expectPage('consent page', await browse(c.pub, jar, pathOf(afterSignIn)));
  lap('consent page');
  const decision = new URLSearchParams({ csrf: hiddenField(consent, 'csrf'), decision: 'allow' });
  for (const meter of meterChoices(consent)) decision.append('meter', meter);
  const resume = expectRedirect('decision', await browse(c.pub, jar, pathOf(formAction(consent, '/decision')), decision));
  lap('decision');
  const callback = expectRedirect('resume', await browse(c.pub, jar, pathOf(resume)));
  const code = new URL(callback).searchParams.get('code');
  if (!code) throw new Failure('no-code', `resume: the client was sent back without a code: ${callback.slice(0, 200)}`);
  lap('resume');
  await post(c.mtls, '/token', new URLSearchParams({
    grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: spec.redirectUri!, client_id: spec.clientId!,
  }), 200, 'access_token');
  lap('token');
}

// --- the run ------------------------------------------------------------------------------------------

function readLines(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean);
}

export async function runLoad(spec: LoadSpec, onMeasure: () => void = () => {}): Promise<LoadResult> {
  const mtls = pool(spec.mtls, spec.connections, spec.timeoutMs);
  const pub = spec.public ? pool(spec.public, spec.connections, spec.timeoutMs) : undefined;
  const histogram = new Histogram();
  const steps = new Map<string, Histogram>();
  const statuses: Record<string, number> = {};
  const errorSamples: string[] = [];
  let completed = 0;
  let ok = 0;
  let errors = 0;
  let recording = false;
  /** The codes ran out. */
  let stopped = false;
  let exhausted = false;

  // What one request (or flow) is.
  let send: () => Promise<void>;
  /** Token kinds: whether every token of the sample has been used once (see shuffledThenRandom). */
  let sampleCovered = () => true;
  if (spec.kind === 'static') {
    // The size and shape of an introspection request.
    const body = new URLSearchParams({ token: randomBytes(32).toString('base64url'), client_id: spec.clientId ?? 'https://directory.example/a/emissions-api' }).toString();
    send = async () => { await post(mtls, '/introspect', body, 200); };
  } else if (spec.kind === 'introspect' || spec.kind === 'refresh' || spec.kind === 'permission') {
    const tokens = readLines(spec.dataFile!).map((l) => JSON.parse(l) as { accessToken: string; refreshToken: string });
    if (tokens.length === 0) throw new Error(`no tokens in ${spec.dataFile}`);
    const draw = shuffledThenRandom(tokens);
    sampleCovered = draw.covered;
    if (spec.kind === 'introspect') {
      // As openid-client's tokenIntrospection sends it with TlsClientAuth: token and client_id, no hint.
      send = async () => { await post(mtls, '/introspect', new URLSearchParams({ token: draw.next().accessToken, client_id: spec.clientId! }), 200, '"active":true'); };
    } else if (spec.kind === 'refresh') {
      send = async () => {
        await post(mtls, '/token', new URLSearchParams({ grant_type: 'refresh_token', refresh_token: draw.next().refreshToken, client_id: spec.clientId! }), 200, 'access_token');
      };
    } else {
      send = async () => { await post(mtls, '/permission', new URLSearchParams({ token: draw.next().refreshToken }), 200, '"permission"'); };
    }
  } else if (spec.kind === 'code') {
    const codes = readLines(spec.dataFile!);
    let next = 0;
    send = async () => {
      if (next >= codes.length) {
        exhausted = true;
        stopped = true;
        throw new Failure('exhausted', 'no authorization code left');
      }
      const code = codes[next++];
      await post(mtls, '/token', new URLSearchParams({
        grant_type: 'authorization_code', code, code_verifier: spec.codeVerifier!, redirect_uri: spec.redirectUri!, client_id: spec.clientId!,
      }), 200, 'access_token');
    };
  } else {
    if (!pub || !spec.smes?.emails.length) throw new Error('the whole flow needs the public listener and seeded SMEs');
    let n = 0;
    const emails = spec.smes.emails;
    const context: FlowContext = {
      mtls, pub, spec, steps, recording: () => recording,
      nextSme: () => ({ email: emails[n++ % emails.length], password: spec.smes!.password }),
    };
    send = () => wholeFlow(context);
  }

  /** Request number -> its scheduled start, for requests counted in the measured window. */
  const inFlight = new Map<number, number>();
  const warmupInFlight = new Map<number, number>();
  let requestNumber = 0;
  let measureStart = 0;
  let measureEnd = Infinity;
  let finalised = false;

  /**
   * One request. Counted when it starts inside the measured window; its latency (from `scheduled`)
   * is recorded whenever it ends, its success counts towards the rate only when it ends inside
   * the window. Requests still unanswered when the pass is over are recorded at their age.
   */
  const one = async (scheduled: number): Promise<void> => {
    const counted = recording && performance.now() < measureEnd;
    const id = requestNumber++;
    if (counted) inFlight.set(id, scheduled);
    else if (!recording) warmupInFlight.set(id, scheduled);
    let failure: unknown;
    try {
      await send();
    } catch (error) {
      failure = error;
    }
    const end = performance.now();
    warmupInFlight.delete(id);
    if (!counted || finalised || !inFlight.delete(id)) return;
    if (failure instanceof Failure && failure.status === 'exhausted') return;
    histogram.record((end - scheduled) * 1000);
    const inWindow = end <= measureEnd;
    if (inWindow) completed += 1;
    if (failure === undefined) {
      if (inWindow) ok += 1;
      statuses['ok'] = (statuses['ok'] ?? 0) + 1;
      return;
    }
    errors += 1;
    const status = failure instanceof Failure ? failure.status : ((failure as { code?: string }).code ?? (failure as Error).name);
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (errorSamples.length < 5) errorSamples.push(String((failure as Error).message).slice(0, 300));
  };

  if (spec.rate !== undefined && spec.warmupSeconds > 0) {
    // An open-loop pass first runs closed loop for the warm-up, uncounted: the JIT tier-ups of
    // both processes (background compiles, on a 2-core machine) then happen before the schedule
    // starts. Measured: otherwise they stalled both for ~30 ms about 10,000 requests in, and at
    // 80 % of the maximum rate the queue that left took seconds to drain.
    // It also goes on until every sampled token has been used once (at most WARM_SAMPLE_MAX_MS
    // more): the window then measures a warm working set, as a running server has, not first
    // reads. This machine's kernel also pages out file pages left untouched for a minute (a DAMON
    // pageout scheme: a 400 MB file written and left alone kept 316 MB in memory after 7 minutes),
    // so after the minutes of seeding a million, the first reads go to the disk.
    const until = performance.now() + spec.warmupSeconds * 1000;
    const cap = until + WARM_SAMPLE_MAX_MS;
    await Promise.all(Array.from({ length: spec.connections }, async () => {
      while (!stopped && (performance.now() < until || (!sampleCovered() && performance.now() < cap))) await send().catch(() => undefined);
    }));
  }
  const cpuStart = process.cpuUsage();
  const wallStart = performance.now();
  // The phases run on timers, whatever the answers: a stalled server cannot stretch a pass.
  const over = new Promise<void>((resolve) => {
    const startMeasuring = () => {
      recording = true;
      measureStart = performance.now();
      measureEnd = measureStart + spec.durationSeconds * 1000;
      onMeasure();
      setTimeout(resolve, spec.durationSeconds * 1000);
    };
    if (spec.warmupSeconds <= 0) startMeasuring();
    else setTimeout(startMeasuring, spec.warmupSeconds * 1000);
  });
  let done = false;
  void over.then(() => { done = true; });
  const codesGone = new Promise<void>((resolve) => {
    const check = () => (stopped ? resolve() : done ? undefined : setTimeout(check, 20));
    check();
  });

  if (spec.rate === undefined) {
    // Closed loop: N virtual users.
    const user = async () => {
      while (!stopped && !done) await one(performance.now());
    };
    const users = Promise.all(Array.from({ length: spec.connections }, user));
    await Promise.race([over, codesGone, users]);
  } else {
    // Open loop: requests start on a fixed schedule, after a ramp from a tenth of the rate to the
    // full rate. Starting at the full rate with a cold load generator queued ~1.4 s of requests
    // that the 20 % headroom of an 80 % pass took the whole window to drain (measured: every
    // request of the window late, by 1.4 s at its start and 0.4 s at its end).
    const rate = spec.rate;
    const rampMs = spec.warmupSeconds * 1000;
    let next = wallStart;
    let timer: NodeJS.Timeout | undefined;
    const tick = () => {
      const now = performance.now();
      while (!stopped && !done && next <= now) {
        const scheduled = next;
        next = wallStart + nextStartMs(next - wallStart, rate, rampMs);
        void one(scheduled);
      }
      if (!stopped && !done) timer = setTimeout(tick, Math.max(0, Math.min(5, next - performance.now())));
    };
    tick();
    await Promise.race([over, codesGone]);
    clearTimeout(timer);
  }
  const end = Math.min(performance.now(), measureEnd);
  // Requests still open: a moment to finish, then they count at their age (a lower bound).
  const grace = performance.now() + Math.min(2000, spec.timeoutMs);
  while (inFlight.size > 0 && performance.now() < grace) await new Promise((r) => setTimeout(r, 20));
  finalised = true;
  const unfinished = inFlight.size;
  const stalledFromWarmup = warmupInFlight.size;
  const oldest = Math.min(...inFlight.values(), ...warmupInFlight.values());
  const oldestUnansweredMs = Number.isFinite(oldest) ? Math.round(performance.now() - oldest) : 0;
  for (const scheduled of inFlight.values()) histogram.record((performance.now() - scheduled) * 1000);
  const cpu = process.cpuUsage(cpuStart);
  const wall = (performance.now() - wallStart) / 1000;
  await Promise.allSettled([mtls.destroy(), pub?.destroy()]);

  const seconds = Math.max(0.001, (end - measureStart) / 1000);
  return {
    name: spec.name, kind: spec.kind, completed, ok, errors, statuses, errorSamples, seconds,
    rps: Math.round((ok / seconds) * 10) / 10,
    latency: histogram.summary(), unfinished, exhausted, stalledFromWarmup, oldestUnansweredMs,
    ...(steps.size ? { steps: Object.fromEntries([...steps].map(([k, h]) => [k, h.summary()])) } : {}),
    loadCores: Math.round(((cpu.user + cpu.system) / 1e6 / wall) * 100) / 100,
    ...(spec.rate !== undefined ? { rate: spec.rate } : {}),
  };
}

if (import.meta.main && process.send) {
  process.once('message', (spec: LoadSpec) => {
    runLoad(spec, () => process.send!({ type: 'phase', phase: 'measure' })).then(
      (result) => process.send!({ type: 'result', result }, () => process.exit(0)),
      (error: unknown) => process.send!({ type: 'error', message: (error as Error)?.stack ?? String(error) }, () => process.exit(1)),
    );
  });
  process.send({ type: 'ready' });
}
