// The revocation lists in force: loaded from every configured source at start-up, refreshed in the
// background before they expire, and answered from memory SYNCHRONOUSLY per request (the OAuth
// library reads the certificate verdict synchronously, so no lookup may wait on the network).
//
// Fail closed: a certificate whose issuer has no current CRL (never loaded, or past its nextUpdate)
// is 'unknown', and withRevocationCheck refuses it.
import type { X509Certificate } from 'node:crypto';

import type { ClientCertificateVerdict } from './client-certificate.ts';
import {
  type CaCertificate,
  type CrlSource,
  type VerifiedCrl,
  CrlError,
  caCertificatesFromPem,
  describeSource,
  loadCrlSource,
  normaliseSerial,
  oneLine,
} from './crl.ts';

export type RevocationStatus = 'good' | 'revoked' | 'unknown';

export type CrlSourceState = 'ok' | 'stale' | 'expired' | 'never_loaded';

/** One source, as /health/ready reports it. Dates are ISO strings so the object serialises as is. */
export interface CrlSourceStatus {
  source: string;
  /** ok: loaded, last attempt succeeded; stale: last attempt failed, last good CRL still current;
   * expired: a CRL of this source is past its nextUpdate; never_loaded: nothing good yet. */
  state: CrlSourceState;
  /** Subjects of the CAs whose CRLs this source holds. */
  issuers: string[];
  thisUpdate?: string;
  /** The earliest nextUpdate of the source's CRLs. */
  nextUpdate?: string;
  revokedCount?: number;
  lastLoadedAt?: string;
  lastAttemptAt?: string;
  lastError?: string;
}

export type RevocationLog = (line: Record<string, unknown>) => void;

export interface RevocationListsOptions {
  sources: CrlSource[];
  /** PEM bundle of the CA certificates whose CRLs are believed: the Client CA root(s) and the Client Issuers. */
  caCertificatesPem: string;
  log?: RevocationLog;
  /** Clock for expiry decisions (tests move it); timers always run on real time. */
  now?: () => Date;
  /** Per fetch. Default 10 s. */
  fetchTimeoutMs?: number;
  /** How long start() keeps retrying before it fails. Default 30 s. */
  startTimeoutMs?: number;
  /** Longest wait between refreshes. Default 1 hour. */
  refreshIntervalMs?: number;
  /** Refresh this long before a CRL's nextUpdate. Default 5 minutes. */
  refreshMarginMs?: number;
  /** Wait after a failed refresh. Default 1 minute. */
  retryIntervalMs?: number;
  /** Largest CRL accepted. Default 20 MiB. */
  maxBytes?: number;
}

interface SourceState {
  source: CrlSource;
  name: string;
  /** The last good CRLs; kept when a later load fails. */
  crls?: VerifiedCrl[];
  loadedAt?: Date;
  attemptAt?: Date;
  lastError?: string;
  timer?: NodeJS.Timeout;
  inflight?: Promise<boolean>;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export class RevocationListError extends Error {
  readonly code = 'crl_unavailable';
  constructor(message: string) {
    super(message);
    this.name = 'RevocationListError';
  }
}

export class RevocationLists {
  readonly #states: SourceState[];
  readonly #cas: CaCertificate[];
  readonly #log: RevocationLog;
  readonly #now: () => Date;
  readonly #fetchTimeoutMs: number;
  readonly #startTimeoutMs: number;
  readonly #refreshIntervalMs: number;
  readonly #refreshMarginMs: number;
  readonly #retryIntervalMs: number;
  readonly #maxBytes: number;
  /** Issuer certificate fingerprint256 -> the CRLs of that issuer, from every source. */
  #byIssuer = new Map<string, VerifiedCrl[]>();
  /** CRLs whose expiry has been logged (so it is logged once, not per request). */
  #expiryLogged = new WeakSet<VerifiedCrl>();
  #running = false;

  constructor(options: RevocationListsOptions) {
    if (options.sources.length === 0) throw new CrlError('no CRL source given');
    this.#cas = caCertificatesFromPem(options.caCertificatesPem);
    if (this.#cas.length === 0) throw new CrlError('no CA certificate given to verify CRLs with');
    this.#states = options.sources.map((source) => ({ source, name: describeSource(source) }));
    this.#log = options.log ?? (() => {});
    this.#now = options.now ?? (() => new Date());
    this.#fetchTimeoutMs = options.fetchTimeoutMs ?? 10_000;
    this.#startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.#refreshIntervalMs = options.refreshIntervalMs ?? 60 * 60_000;
    this.#refreshMarginMs = options.refreshMarginMs ?? 5 * 60_000;
    this.#retryIntervalMs = options.retryIntervalMs ?? 60_000;
    this.#maxBytes = options.maxBytes ?? 20 * 1024 * 1024;
  }

  /** The CA certificates CRLs are verified against (node form), for chain walks. */
  get caCertificates(): readonly X509Certificate[] {
    return this.#cas.map((ca) => ca.node);
  }

  /**
   * Loads every source (retrying until the start timeout), then refreshes in the background.
   * Rejects with a one-line RevocationListError naming the first source that never loaded.
   */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    const deadline = performance.now() + this.#startTimeoutMs;
    await Promise.all(this.#states.map((state) => this.#firstLoad(state, deadline)));
    const missing = this.#states.find((state) => !state.crls);
    if (missing) {
      this.stop();
      const seconds = Math.round(this.#startTimeoutMs / 100) / 10;
      throw new RevocationListError(`CRL source ${missing.name} could not be loaded within ${seconds} s: ${missing.lastError ?? 'no answer'}`);
    }
    for (const state of this.#states) this.#schedule(state);
  }

  /** Stops background refreshes (in-flight fetches finish, their results are still recorded). */
  stop(): void {
    this.#running = false;
    for (const state of this.#states) {
      clearTimeout(state.timer);
      state.timer = undefined;
    }
  }

  /** Fetches every source now (after any fetch in flight), reschedules, and returns the status. Never throws. */
  async refreshNow(): Promise<CrlSourceStatus[]> {
    await Promise.all(this.#states.map(async (state) => {
      await this.#refresh(state, this.#fetchTimeoutMs, true);
      this.#schedule(state);
    }));
    return this.status();
  }

  /**
   * SYNCHRONOUS. Whether `serial`, issued by `issuer` (the CA certificate that signed it), is revoked.
   * 'revoked' if any loaded CRL of that issuer lists it; otherwise 'good' if the newest CRL of the issuer
   * is current at `now`, and 'unknown' if there is none or it is past its nextUpdate.
   */
  isRevoked(issuer: X509Certificate, serial: string, now: Date = this.#now()): RevocationStatus {
    const crls = this.#byIssuer.get(issuer.fingerprint256);
    if (!crls || crls.length === 0) return 'unknown';
    const wanted = normaliseSerial(serial);
    if (crls.some((crl) => crl.revoked.has(wanted))) return 'revoked';
    const newest = crls.reduce((a, b) => (b.thisUpdate.getTime() > a.thisUpdate.getTime() ? b : a));
    if (now.getTime() > newest.nextUpdate.getTime()) {
      this.#logExpiry(newest);
      return 'unknown';
    }
    return 'good';
  }

  /** Whether any CRL of this issuer has been loaded (current or not). */
  covers(issuer: X509Certificate): boolean {
    return (this.#byIssuer.get(issuer.fingerprint256)?.length ?? 0) > 0;
  }

  /**
   * Subjects of configured CA certificates of which no CRL has been loaded: worth a warning at start-up,
   * since (with intermediates 'require') every certificate they signed will be refused as 'unknown'.
   */
  uncoveredIssuers(): string[] {
    return this.#cas.filter((ca) => !this.covers(ca.node)).map((ca) => ca.node.subject.replaceAll('\n', ', '));
  }

  /** Per-source state for /health/ready (and logs expiry it notices). */
  status(now: Date = this.#now()): CrlSourceStatus[] {
    return this.#states.map((state) => {
      const base = {
        source: state.name,
        ...(state.attemptAt ? { lastAttemptAt: state.attemptAt.toISOString() } : {}),
        ...(state.lastError ? { lastError: state.lastError } : {}),
      };
      const crls = state.crls;
      if (!crls) return { ...base, state: 'never_loaded', issuers: [] };
      const nextUpdate = earliestNextUpdate(crls);
      const expired = crls.filter((crl) => now.getTime() > crl.nextUpdate.getTime());
      for (const crl of expired) this.#logExpiry(crl);
      const thisUpdate = crls.reduce((a, b) => (b.thisUpdate.getTime() < a.thisUpdate.getTime() ? b : a)).thisUpdate;
      return {
        ...base,
        state: expired.length > 0 ? 'expired' : state.lastError ? 'stale' : 'ok',
        issuers: crls.map((crl) => crl.issuerSubject),
        thisUpdate: thisUpdate.toISOString(),
        nextUpdate: new Date(nextUpdate).toISOString(),
        revokedCount: crls.reduce((sum, crl) => sum + crl.revoked.size, 0),
        ...(state.loadedAt ? { lastLoadedAt: state.loadedAt.toISOString() } : {}),
      };
    });
  }

  /** True when every source has a current CRL (ok or stale): what /health/ready should require. */
  ready(now: Date = this.#now()): boolean {
    return this.status(now).every((source) => source.state === 'ok' || source.state === 'stale');
  }

  async #firstLoad(state: SourceState, deadline: number): Promise<void> {
    for (;;) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) return;
      if (await this.#refresh(state, Math.max(1, Math.min(this.#fetchTimeoutMs, remaining)), false)) return;
      const pause = Math.min(1_000, this.#retryIntervalMs, deadline - performance.now());
      if (pause <= 0 || !this.#running) return;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /**
   * One load of a source. With `after`, waits for a fetch in flight and then fetches again (the caller
   * wants content newer than the call); otherwise joins the fetch in flight. Resolves true on success.
   */
  #refresh(state: SourceState, timeoutMs: number, after: boolean): Promise<boolean> {
    const previous = state.inflight;
    if (previous && !after) return previous;
    const run = (async () => {
      if (previous) await previous;
      return this.#load(state, timeoutMs);
    })();
    state.inflight = run;
    void run.finally(() => {
      if (state.inflight === run) state.inflight = undefined;
    });
    return run;
  }

  async #load(state: SourceState, timeoutMs: number): Promise<boolean> {
    state.attemptAt = this.#now();
    try {
      const crls = await loadCrlSource(state.source, this.#cas, { timeoutMs, maxBytes: this.#maxBytes });
      if (crls.length === 0) throw new CrlError('no CRL in the source');
      refuseRollback(state.crls ?? [], crls);
      state.crls = crls;
      state.loadedAt = this.#now();
      state.lastError = undefined;
      this.#reindex();
      this.#log({
        msg: 'crl loaded', source: state.name, issuers: crls.map((crl) => crl.issuerSubject),
        nextUpdate: new Date(earliestNextUpdate(crls)).toISOString(), revoked: crls.reduce((sum, crl) => sum + crl.revoked.size, 0),
      });
      return true;
    } catch (error) {
      state.lastError = oneLine((error as Error).message);
      this.#log({ msg: 'crl fetch failed', source: state.name, error: state.lastError, keeping: state.crls ? 'last good CRL' : 'nothing' });
      for (const crl of state.crls ?? []) {
        if (this.#now().getTime() > crl.nextUpdate.getTime()) this.#logExpiry(crl);
      }
      return false;
    }
  }

  #reindex(): void {
    const byIssuer = new Map<string, VerifiedCrl[]>();
    for (const crl of this.#states.flatMap((state) => state.crls ?? [])) {
      const key = crl.issuer.fingerprint256;
      byIssuer.set(key, [...(byIssuer.get(key) ?? []), crl]);
    }
    this.#byIssuer = byIssuer;
  }

  #logExpiry(crl: VerifiedCrl): void {
    if (this.#expiryLogged.has(crl)) return;
    this.#expiryLogged.add(crl);
    const sources = this.#states.filter((state) => state.crls?.includes(crl)).map((state) => state.name);
    this.#log({
      msg: 'crl expired', issuer: crl.issuerSubject, nextUpdate: crl.nextUpdate.toISOString(), sources,
      effect: 'certificates from this issuer are refused until a current CRL is loaded',
    });
  }

  /** Next refresh: before the earliest nextUpdate (less the margin), at most the interval away; the retry interval after a failure. */
  #schedule(state: SourceState): void {
    clearTimeout(state.timer);
    state.timer = undefined;
    if (!this.#running) return;
    const floor = Math.min(this.#retryIntervalMs, this.#refreshIntervalMs);
    let delay = state.lastError || !state.crls ? this.#retryIntervalMs : this.#refreshIntervalMs;
    if (state.crls) delay = Math.min(delay, earliestNextUpdate(state.crls) - this.#refreshMarginMs - this.#now().getTime());
    delay = Math.min(Math.max(delay, floor), MAX_TIMER_MS);
    state.timer = setTimeout(() => {
      void this.#refresh(state, this.#fetchTimeoutMs, false).then(() => this.#schedule(state));
    }, delay);
    state.timer.unref();
  }
}

function earliestNextUpdate(crls: readonly VerifiedCrl[]): number {
  return Math.min(...crls.map((crl) => crl.nextUpdate.getTime()));
}

/**
 * A source must not go back in time for an issuer: an older (replayed) CRL could omit a revocation.
 * Equal thisUpdate is the same CRL fetched again; a cRLNumber, when both carry one, must not shrink either.
 */
function refuseRollback(previous: readonly VerifiedCrl[], next: readonly VerifiedCrl[]): void {
  for (const crl of next) {
    const before = previous.find((old) => old.issuer.fingerprint256 === crl.issuer.fingerprint256);
    if (!before) continue;
    if (crl.thisUpdate.getTime() < before.thisUpdate.getTime()
      || (crl.crlNumber !== undefined && before.crlNumber !== undefined && crl.crlNumber < before.crlNumber)) {
      throw new CrlError(`CRL of ${crl.issuerSubject} (thisUpdate ${crl.thisUpdate.toISOString()}) is older than the one in force (${before.thisUpdate.toISOString()})`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Plugging the lists into the certificate verifier.

export type RevocationFailureCode = 'revoked' | 'revocation_unknown';

/** ClientCertificateVerdict with the two revocation failures (merge into ClientCertificateFailureCode when wiring). */
export type RevocationCheckedVerdict =
  | ClientCertificateVerdict
  | { ok: false; code: RevocationFailureCode; message: string };

/** What the certificate middleware needs: ClientCertificateTrust satisfies it, and so does withRevocationCheck's result. */
export interface ClientCertificateVerifier {
  verify(presented: X509Certificate[], now?: Date): RevocationCheckedVerdict;
}

export interface RevocationCheckOptions {
  /**
   * 'require' (default): every certificate below the root, intermediates included, needs a current CRL
   * from its issuer. 'if-listed': intermediates are checked only when some CRL of their issuer (the root)
   * was ever loaded; the leaf always needs one.
   */
  intermediates?: 'require' | 'if-listed';
  /** Cached chain walks (LRU), keyed by the presented certificates. Default 1000. */
  cacheSize?: number;
}

/** One certificate of the chain and the CA certificate that signed it (undefined: not found). */
interface Link {
  certificate: X509Certificate;
  subject: string;
  serial: string;
  issuer?: X509Certificate;
}

const MAX_CHAIN_LENGTH = 5;

/**
 * A verifier with `trust`'s signature that also refuses revoked certificates: it calls `trust.verify`,
 * and when that accepts, checks every certificate of the chain below the (self-signed) root against the
 * lists. Synchronous. Failures: 'revoked', or 'revocation_unknown' when the issuer has no current CRL.
 */
export function withRevocationCheck(
  trust: { verify(presented: X509Certificate[], now?: Date): ClientCertificateVerdict },
  lists: RevocationLists,
  options: RevocationCheckOptions = {},
): ClientCertificateVerifier {
  const requireIntermediates = (options.intermediates ?? 'require') === 'require';
  const cacheSize = options.cacheSize ?? 1000;
  const cache = new Map<string, Link[]>();
  const known = lists.caCertificates;

  function chainOf(presented: X509Certificate[]): Link[] {
    const key = presented.map((certificate) => certificate.fingerprint256).join('/');
    let links = cache.get(key);
    if (links) cache.delete(key);
    else links = walk(presented, known);
    cache.set(key, links);
    if (cache.size > cacheSize) cache.delete(cache.keys().next().value!);
    return links;
  }

  return {
    verify(presented: X509Certificate[], now: Date = new Date()): RevocationCheckedVerdict {
      const verdict = trust.verify(presented, now);
      if (!verdict.ok) return verdict;
      let links: Link[];
      try {
        links = chainOf(presented);
      } catch (error) {
        // Never throws per request: a chain the walk chokes on cannot be checked, so it is refused.
        return { ok: false, code: 'revocation_unknown', message: `the certificate chain could not be checked for revocation: ${(error as Error).message}` };
      }
      let unknown: Extract<RevocationCheckedVerdict, { ok: false }> | undefined;
      for (const [index, link] of links.entries()) {
        if (!link.issuer) {
          if (index > 0 && !requireIntermediates) continue;
          unknown ??= { ok: false, code: 'revocation_unknown', message: `the issuer of ${link.subject} is not a CA certificate whose CRLs are known` };
          continue;
        }
        const status = lists.isRevoked(link.issuer, link.serial, now);
        if (status === 'revoked') {
          return { ok: false, code: 'revoked', message: `${link.subject} (serial ${link.serial}) has been revoked` };
        }
        if (status === 'unknown') {
          if (index > 0 && !requireIntermediates && !lists.covers(link.issuer)) continue;
          const issuer = link.issuer.subject.replaceAll('\n', ', ');
          unknown ??= { ok: false, code: 'revocation_unknown', message: `no current revocation list from ${issuer}, so ${link.subject} cannot be checked` };
        }
      }
      return unknown ?? verdict;
    },
  };
}

/**
 * leaf -> issuer -> ... up to a self-signed certificate (the root, not checked: nobody revokes it by CRL).
 * Each link needs the name/key-identifier match and a valid signature, as in ClientCertificateTrust.
 */
function walk(presented: X509Certificate[], known: readonly X509Certificate[]): Link[] {
  const candidates = [...presented.slice(1), ...known].filter((certificate) => certificate.ca);
  const links: Link[] = [];
  const seen = new Set<string>();
  let current: X509Certificate | undefined = presented[0];
  while (current && links.length < MAX_CHAIN_LENGTH && !seen.has(current.fingerprint256)) {
    seen.add(current.fingerprint256);
    const certificate: X509Certificate = current;
    if (links.length > 0 && certificate.checkIssued(certificate) && certificate.verify(certificate.publicKey)) break;
    const issuer = candidates.find((candidate) => certificate.checkIssued(candidate) && certificate.verify(candidate.publicKey));
    links.push({ certificate, subject: certificate.subject.replaceAll('\n', ', '), serial: normaliseSerial(certificate.serialNumber), ...(issuer ? { issuer } : {}) });
    current = issuer;
  }
  return links;
}
