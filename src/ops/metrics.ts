/**
 * Prometheus metrics (prom-client): one registry per server process and typed helpers, so that
 * label names and values are decided here and nowhere else.
 *
 * Labels never carry an id, a token, a query string or a raw path: routes are normalised
 * (src/ops/routes.ts), OAuth error codes and certificate verdict codes come from closed lists,
 * and everything else is a small enumeration. Scraped from the internal metrics listener
 * (src/ops/metrics-server.ts), never from the public or mTLS listeners.
 *
 * | metric                                          | type      | labels                                              |
 * | ----------------------------------------------- | --------- | --------------------------------------------------- |
 * | perseus_http_requests_total                     | counter   | listener, method, route, status_class, oauth_error  |
 * | perseus_http_request_duration_seconds           | histogram | listener, method, route, status_class, oauth_error  |
 * | perseus_oauth_errors_total                      | counter   | listener, route, code                               |
 * | perseus_oauth_flows_started_total               | counter   | (PAR answered 201)                                  |
 * | perseus_oauth_flows_completed_total             | counter   | (token issued from an authorization code)           |
 * | perseus_permissions_granted_total               | counter   |                                                     |
 * | perseus_permissions_renewed_total               | counter   |                                                     |
 * | perseus_permissions_expired_total               | counter   |                                                     |
 * | perseus_permissions_withdrawn_total             | counter   | by (sme, client, operator, cascade)                 |
 * | perseus_sign_ins_total                          | counter   | outcome (ok, failed)                                |
 * | perseus_outbox_pending                          | gauge     | (read from the outbox store at scrape time)         |
 * | perseus_outbox_delivered_total                  | counter   |                                                     |
 * | perseus_outbox_delivery_failures_total          | counter   | outcome (retry, given_up)                           |
 * | perseus_store_operation_duration_seconds        | histogram | store, model, operation, outcome (ok, error, unavailable) |
 * | perseus_client_certificate_verdicts_total       | counter   | verdict (ok or the failure code)                    |
 * | perseus_crl_source_state                        | gauge     | source, state (1 for the current state, else 0)     |
 * | perseus_crl_next_update_timestamp_seconds       | gauge     | source                                              |
 * | perseus_rate_limited_total                      | counter   | rule                                                |
 *
 * plus prom-client's default process metrics (process_*, nodejs_*).
 *
 * With WORKERS > 1 (node:cluster) every worker keeps its own registry and the primary serves the
 * sum (shareMetricsWithPrimary in the workers, clusterMetricsSource in the primary): counters and
 * histograms add up, the outbox depth is the largest any worker read, a CRL state is 1 when any
 * worker is in it, and the CRL nextUpdate is the earliest.
 */
import type { Middleware } from 'koa';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { OidcAdapter, OidcStore } from '../adapters/types.ts';
import type { AuditEvent, AuditLog } from '../consent/audit-log.ts';
import type { WithdrawnBy } from '../consent/permission-record.ts';
import { verdictOf } from '../http/client-certificate.ts';
import { isStoreUnavailable } from '../http/store-unavailable.ts';
import type { CrlSourceState, CrlSourceStatus } from '../pki/revocation-list-cache.ts';
import { oauthErrorOf, statusClass } from './outcome.ts';
import { normaliseMethod, normaliseRoute } from './routes.ts';

export type Listener = 'public' | 'mtls';
export type StoreOutcome = 'ok' | 'error' | 'unavailable';
export type DeliveryOutcome = 'delivered' | 'retry' | 'given_up';

const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const CRL_STATES: readonly CrlSourceState[] = ['ok', 'stale', 'expired', 'never_loaded'];
const VERDICT_CODE = /^[a-z][a-z0-9_]{0,40}$/;

export interface MetricsOptions {
  /** Defaults to a new registry (not prom-client's global one, so tests and several servers never share counters). */
  registry?: Registry;
  /** prom-client's process and Node.js metrics. Default true. */
  defaultMetrics?: boolean;
}

export interface HttpObservation {
  listener: Listener;
  method: string;
  /** Already normalised (normaliseRoute). */
  route: string;
  status: number;
  oauthError?: string;
  seconds: number;
}

export class PerseusMetrics {
  readonly registry: Registry;

  readonly #httpRequests: Counter<'listener' | 'method' | 'route' | 'status_class' | 'oauth_error'>;
  readonly #httpDuration: Histogram<'listener' | 'method' | 'route' | 'status_class' | 'oauth_error'>;
  readonly #oauthErrors: Counter<'listener' | 'route' | 'code'>;
  readonly #flowsStarted: Counter;
  readonly #flowsCompleted: Counter;
  readonly #granted: Counter;
  readonly #renewed: Counter;
  readonly #expired: Counter;
  readonly #withdrawn: Counter<'by'>;
  readonly #signIns: Counter<'outcome'>;
  readonly #outboxDelivered: Counter;
  readonly #outboxFailures: Counter<'outcome'>;
  readonly #storeDuration: Histogram<'store' | 'model' | 'operation' | 'outcome'>;
  readonly #verdicts: Counter<'verdict'>;
  readonly #rateLimited: Counter<'rule'>;
  readonly #outboxSources: Array<{ pending(): Promise<number> }> = [];
  readonly #crlSources: Array<{ status(): CrlSourceStatus[] }> = [];

  constructor(options: MetricsOptions = {}) {
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    const registers = [registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

    const httpLabels = ['listener', 'method', 'route', 'status_class', 'oauth_error'] as const;
    this.#httpRequests = new Counter({ name: 'perseus_http_requests_total', help: 'HTTP requests answered, by listener, normalised route and outcome.', labelNames: httpLabels, registers });
    this.#httpDuration = new Histogram({ name: 'perseus_http_request_duration_seconds', help: 'Time to answer an HTTP request.', labelNames: httpLabels, buckets: HTTP_BUCKETS, registers });
    this.#oauthErrors = new Counter({ name: 'perseus_oauth_errors_total', help: 'OAuth error answers by code.', labelNames: ['listener', 'route', 'code'] as const, registers });
    this.#flowsStarted = new Counter({ name: 'perseus_oauth_flows_started_total', help: 'Pushed authorization requests accepted (PAR 201).', registers });
    this.#flowsCompleted = new Counter({ name: 'perseus_oauth_flows_completed_total', help: 'Tokens issued from an authorization code.', registers });
    this.#granted = new Counter({ name: 'perseus_permissions_granted_total', help: 'Permissions granted (new records).', registers });
    this.#renewed = new Counter({ name: 'perseus_permissions_renewed_total', help: 'Permissions renewed (granted again while active).', registers });
    this.#expired = new Counter({ name: 'perseus_permissions_expired_total', help: 'Permission expiries recorded.', registers });
    this.#withdrawn = new Counter({ name: 'perseus_permissions_withdrawn_total', help: 'Permissions withdrawn, by who withdrew.', labelNames: ['by'] as const, registers });
    this.#signIns = new Counter({ name: 'perseus_sign_ins_total', help: 'SME sign-in attempts by outcome.', labelNames: ['outcome'] as const, registers });
    this.#outboxDelivered = new Counter({ name: 'perseus_outbox_delivered_total', help: 'Messages to clients delivered.', registers });
    this.#outboxFailures = new Counter({ name: 'perseus_outbox_delivery_failures_total', help: 'Failed message deliveries: retry (will be tried again) or given_up.', labelNames: ['outcome'] as const, registers });
    this.#storeDuration = new Histogram({ name: 'perseus_store_operation_duration_seconds', help: 'oidc-provider store operations by model and operation; on the embedded store a write includes its wait for the group commit.', labelNames: ['store', 'model', 'operation', 'outcome'] as const, buckets: STORE_BUCKETS, registers });
    this.#verdicts = new Counter({ name: 'perseus_client_certificate_verdicts_total', help: 'Client certificate verdicts on the mTLS listener, per request.', labelNames: ['verdict'] as const, registers });
    this.#rateLimited = new Counter({ name: 'perseus_rate_limited_total', help: 'Requests refused by a rate limit, by rule.', labelNames: ['rule'] as const, registers });

    const outboxSources = this.#outboxSources;
    new Gauge({
      name: 'perseus_outbox_pending', help: 'Messages to clients not yet delivered nor given up (NaN when the store did not answer).', registers, aggregator: 'max',
      async collect() {
        if (outboxSources.length === 0) return;
        try {
          const counts = await Promise.all(outboxSources.map((source) => source.pending()));
          this.set(counts.reduce((a, b) => a + b, 0));
        } catch {
          this.set(Number.NaN);
        }
      },
    });
    const crlSources = this.#crlSources;
    const nextUpdate = new Gauge({ name: 'perseus_crl_next_update_timestamp_seconds', help: 'Earliest nextUpdate of the CRLs of a source (Unix time).', labelNames: ['source'] as const, registers, aggregator: 'min' });
    new Gauge({
      name: 'perseus_crl_source_state', help: 'State of each CRL source: 1 for its current state (ok, stale, expired, never_loaded), 0 for the others.',
      labelNames: ['source', 'state'] as const, registers, aggregator: 'max',
      collect() {
        this.reset();
        nextUpdate.reset();
        for (const status of crlSources.flatMap((source) => source.status())) {
          for (const state of CRL_STATES) this.set({ source: status.source, state }, status.state === state ? 1 : 0);
          if (status.nextUpdate) nextUpdate.set({ source: status.source }, Date.parse(status.nextUpdate) / 1000);
        }
      },
    });
  }

  /** One answered request. */
  observeHttp(o: HttpObservation): void {
    const labels = { listener: o.listener, method: normaliseMethod(o.method), route: o.route, status_class: statusClass(o.status), oauth_error: o.oauthError ?? '' };
    this.#httpRequests.inc(labels);
    this.#httpDuration.observe(labels, o.seconds);
    if (o.oauthError) this.#oauthErrors.inc({ listener: o.listener, route: o.route, code: o.oauthError });
  }

  /**
   * Koa middleware counting and timing every request of a listener. Put it first (after
   * trustedForwarding) so that its time covers the whole answer. On the mTLS listener it also
   * counts the certificate verdict of each request.
   */
  httpMetrics(listener: Listener): Middleware {
    return async (ctx, next) => {
      const started = performance.now();
      let status: number | undefined;
      try {
        await next();
      } catch (err) {
        // koa answers an uncaught error with its status (or 500) after every middleware returned.
        const declared = (err as { status?: unknown; statusCode?: unknown })?.status ?? (err as { statusCode?: unknown })?.statusCode;
        status = typeof declared === 'number' && declared >= 400 && declared < 600 ? declared : 500;
        throw err;
      } finally {
        const answered = status ?? ctx.status;
        this.observeHttp({
          listener, method: ctx.method, route: normaliseRoute(ctx.path), status: answered, seconds: (performance.now() - started) / 1000,
          oauthError: status === undefined ? oauthErrorOf(ctx) : undefined,
        });
        if (listener === 'mtls') {
          const verdict = verdictOf(ctx);
          if (verdict) this.certificateVerdict(verdict.ok ? 'ok' : verdict.code);
        }
      }
    };
  }

  flowStarted(): void {
    this.#flowsStarted.inc();
  }

  flowCompleted(): void {
    this.#flowsCompleted.inc();
  }

  permissionGranted(): void {
    this.#granted.inc();
  }

  permissionRenewed(): void {
    this.#renewed.inc();
  }

  permissionsExpired(count = 1): void {
    if (count > 0) this.#expired.inc(count);
  }

  permissionWithdrawn(by: WithdrawnBy): void {
    this.#withdrawn.inc({ by });
  }

  signIn(outcome: 'ok' | 'failed'): void {
    this.#signIns.inc({ outcome });
  }

  /** Feed it from OutboxWorker's DeliveryObserver. */
  outboxDelivery(outcome: DeliveryOutcome): void {
    if (outcome === 'delivered') this.#outboxDelivered.inc();
    else this.#outboxFailures.inc({ outcome });
  }

  /** Reads `pending()` at every scrape for perseus_outbox_pending. */
  watchOutbox(store: { pending(): Promise<number> }): void {
    this.#outboxSources.push(store);
  }

  /** Reads `status()` at every scrape for the CRL gauges. */
  watchRevocation(lists: { status(): CrlSourceStatus[] }): void {
    this.#crlSources.push(lists);
  }

  storeOperation(store: string, model: string, operation: string, seconds: number, outcome: StoreOutcome): void {
    this.#storeDuration.observe({ store, model, operation, outcome }, seconds);
  }

  /** `ok`, or the verdict's failure code (no_certificate, expired, revoked, revocation_unknown, …). */
  certificateVerdict(verdict: string): void {
    this.#verdicts.inc({ verdict: VERDICT_CODE.test(verdict) ? verdict : 'other' });
  }

  rateLimited(rule: string): void {
    this.#rateLimited.inc({ rule });
  }

  /** The exposition text (what /metrics serves). */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}

export function createMetrics(options: MetricsOptions = {}): PerseusMetrics {
  return new PerseusMetrics(options);
}

// ---------------------------------------------------------------------------------------------
// Sources wired without touching the code they observe.

const ADAPTER_OPERATIONS = ['upsert', 'find', 'findByUid', 'findByUserCode', 'consume', 'destroy', 'revokeByGrantId'] as const;
/** Operations only some adapters have (types.ts): timed when the inner adapter has them. */
const OPTIONAL_ADAPTER_OPERATIONS = ['findWithGrant'] as const;

/**
 * The same store, with every adapter call timed by model and operation (and ping/purgeExpired).
 * `outcome` is `unavailable` for StoreUnavailableError, `error` for any other rejection (a lost
 * consume race is an `error` too: it is an InvalidGrant by contract).
 */
export function instrumentOidcStore(store: OidcStore, metrics: PerseusMetrics): OidcStore {
  async function timed<T>(model: string, operation: string, call: () => Promise<T>): Promise<T> {
    const started = performance.now();
    let outcome: StoreOutcome = 'ok';
    try {
      return await call();
    } catch (err) {
      outcome = isStoreUnavailable(err) ? 'unavailable' : 'error';
      throw err;
    } finally {
      metrics.storeOperation(store.name, model, operation, (performance.now() - started) / 1000, outcome);
    }
  }
  const adapters = new Map<string, OidcAdapter>();
  return {
    get name() {
      return store.name;
    },
    adapterFor(modelName: string): OidcAdapter {
      let wrapped = adapters.get(modelName);
      if (!wrapped) {
        const inner = store.adapterFor(modelName);
        const operations = [...ADAPTER_OPERATIONS, ...OPTIONAL_ADAPTER_OPERATIONS.filter((operation) => typeof inner[operation] === 'function')];
        const entries = operations.map((operation) => [
          operation,
          (...args: unknown[]) => timed(modelName, operation, () => (inner[operation] as (...a: unknown[]) => Promise<unknown>).apply(inner, args)),
        ]);
        wrapped = Object.fromEntries(entries) as unknown as OidcAdapter;
        adapters.set(modelName, wrapped);
      }
      return wrapped;
    },
    ping: () => timed('-', 'ping', () => store.ping()),
    close: () => store.close(),
    purgeExpired: (now?: Date) => timed('-', 'purgeExpired', () => store.purgeExpired(now)),
  };
}

/** What observeProvider needs of oidc-provider (its EventEmitter side). */
export interface ProviderEvents {
  on(event: string, listener: (...args: any[]) => void): unknown;
}

/**
 * Flows started (PAR accepted: `pushed_authorization_request.success`, answered 201) and
 * completed (`grant.success` of the authorization_code grant) from the provider's events.
 */
export function observeProvider(provider: ProviderEvents, metrics: PerseusMetrics): void {
  provider.on('pushed_authorization_request.success', () => metrics.flowStarted());
  provider.on('grant.success', (ctx: { oidc?: { params?: { grant_type?: unknown } } } | undefined) => {
    if (ctx?.oidc?.params?.grant_type === 'authorization_code') metrics.flowCompleted();
  });
}

/** Counts one audit event: permission grants, renewals, withdrawals, expiries and sign-ins. */
export function countAuditEvent(event: AuditEvent, metrics: PerseusMetrics): void {
  const detail = event.detail ?? {};
  switch (event.kind) {
    case 'decision':
      if (detail.decision === 'allow' && detail.outcome === 'renewed') metrics.permissionRenewed();
      else if (detail.decision === 'allow') metrics.permissionGranted();
      break;
    case 'withdrawal':
      if (detail.by === 'sme' || detail.by === 'client' || detail.by === 'operator' || detail.by === 'cascade') metrics.permissionWithdrawn(detail.by);
      break;
    case 'expiry_seen':
      metrics.permissionsExpired(1);
      break;
    case 'sign_in':
      metrics.signIn('ok');
      break;
    case 'sign_in_failed':
      metrics.signIn('failed');
      break;
    default:
      break;
  }
}

/**
 * Counts the permission domain's facts where they are recorded: every audit event that was
 * appended (Permissions, the sign-in pages and the CLI all write there). Wraps `append` ON THIS
 * INSTANCE, so everything already holding the object (Permissions, routes) is observed; an
 * append that fails is not counted. Returns the same object.
 */
export function observeAuditLog<T extends AuditLog>(audit: T, metrics: PerseusMetrics): T {
  const append = audit.append.bind(audit);
  audit.append = async (event: AuditEvent) => {
    await append(event);
    countAuditEvent(event, metrics);
  };
  return audit;
}

// ---------------------------------------------------------------------------------------------
// node:cluster (WORKERS > 1): the primary serves what every worker counted.

/** What the metrics listener serves: a Registry, or the cluster's aggregate. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/** In a cluster WORKER: answer the primary's requests (IPC) with this worker's registry. */
export function shareMetricsWithPrimary(metrics: PerseusMetrics): void {
  AggregatorRegistry.setRegistries([metrics.registry]);
  // The constructor installs the worker's listener for the primary's requests.
  new AggregatorRegistry();
}

/** In the cluster PRIMARY: every worker's registry, gathered over IPC and aggregated at each scrape. */
export function clusterMetricsSource(): MetricsSource {
  const aggregator = new AggregatorRegistry();
  return { contentType: aggregator.contentType, metrics: () => aggregator.clusterMetrics() };
}
