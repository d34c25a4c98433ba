import cluster from 'node:cluster';
import { readFileSync, existsSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';

import Koa from 'koa';
import mount from 'koa-mount';
import type Provider from 'oidc-provider';

import type { ServerConfig } from './config/environment.ts';
import { mtlsDeliverer } from './consent/message-delivery.ts';
import { OutboxWorker, type Deliver, type OutboxStore } from './consent/outbox.ts';
import type { AuditLog } from './consent/audit-log.ts';
import { openDomain } from './consent/domain.ts';
import type { SmeAccountStore } from './consent/sme-accounts.ts';
import type { Permissions } from './consent/permissions.ts';
import { dashboardRoutes } from './endpoints/dashboard.ts';
import { evidenceRoutes } from './endpoints/evidence.ts';
import { introspectTokens } from './endpoints/introspection.ts';
import { permissionEndpoint } from './endpoints/permission.ts';
import { partiesFor } from './consent/permission-text.ts';
import { machineAudit } from './http/machine-audit.ts';
import { PERMISSION_PATH } from './http/metadata.ts';
import { requireClientCertificate, verifyClientCertificate } from './http/client-certificate.ts';
import { CsrfTokens } from './http/csrf.ts';
import { introspectionGate } from './http/introspection-gate.ts';
import { mtlsListenerOnly, publicListenerOnly } from './http/listeners.ts';
import { pushedRequestsOnly } from './http/pushed-requests-only.ts';
import { noteStoreFailures, storeUnavailableAnswers } from './http/store-unavailable.ts';
import { serveMetadata } from './http/metadata.ts';
import { pageErrors } from './http/page-errors.ts';
import type { LogSink } from './http/request-log.ts';
import { securityHeaders } from './http/security-headers.ts';
import { reloadCertificatesOnChange } from './http/tls-reload.ts';
import { staticAssets } from './http/static-assets.ts';
import { interactionRoutes } from './interactions/routes.ts';
import { ClientCertificateTrust } from './pki/client-certificate.ts';
import { crlSourcesFromConfig } from './pki/crl.ts';
import { type ClientCertificateVerifier, RevocationLists, withRevocationCheck } from './pki/revocation-list-cache.ts';
import { TrustedProxies, trustedForwarding } from './http/trusted-proxies.ts';
import { proxyClientCertificate } from './http/proxy-client-certificate.ts';
import { createProvider, ROUTES } from './provider/index.ts';
import { Pages } from './views/render.ts';
import { createLogger, loggerFromSink, logSink, requestLogger, type Logger } from './ops/logger.ts';
import {
  createMetrics, instrumentOidcStore, observeAuditLog, observeProvider, shareMetricsWithPrimary, type PerseusMetrics, type ProviderEvents,
} from './ops/metrics.ts';
import { readinessCheck, startMetricsServer, type MetricsServer } from './ops/metrics-server.ts';
import { noteOAuthError } from './ops/outcome.ts';
import { clientRateLimit, MemoryRateLimitStore, RateLimiter, RedisRateLimitStore, signInLimits, type RateLimitStore } from './ops/rate-limit.ts';
import { createShutdown, type Shutdown } from './ops/shutdown.ts';

/** TLS 1.2 suites the FAPI 2.0 Security Profile allows (TLS 1.3 suites are all allowed). */
const FAPI_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-AES128-GCM-SHA256', 'DHE-RSA-AES256-GCM-SHA384',
].join(':');

export interface StartOptions {
  /** Where log lines go, as objects (tests). Default: pino JSON lines on stdout at LOG_LEVEL. */
  log?: LogSink;
  /** A pino logger instead (wins over `log`). */
  logger?: Logger;
  /** Metrics registry and helpers (tests may pass their own). */
  metrics?: PerseusMetrics;
  /** The clock for permission dates and certificate validity (tests move it). */
  now?: () => Date;
  /**
   * Whether introspection is answered by endpoints/introspection.ts (default) or entirely by the
   * library's own endpoint. Tests turn it off to compare the two answer for answer.
   */
  libraryIntrospection?: boolean;
}

export interface RunningServer {
  config: ServerConfig;
  provider: Provider;
  smeAccounts: SmeAccountStore;
  permissions: Permissions;
  audit: AuditLog;
  outbox: OutboxWorker;
  outboxStore: OutboxStore;
  publicPort: number;
  mtlsPort: number;
  metrics: PerseusMetrics;
  /** Port of the internal metrics/health listener, when METRICS_PORT is set (not in cluster workers: the primary serves it). */
  metricsPort: number | undefined;
  /** Graceful shutdown; main.ts hands it to handleSignals. */
  shutdown: Shutdown;
  /** The graceful shutdown; resolves when every closer ran. */
  close(): Promise<void>;
}

function readRequired(file: string, variable: string): Buffer {
  try {
    return readFileSync(file);
  } catch {
    throw new Error(`${variable}: cannot read ${file} (run \`npm run cli -- pki init\` for a dev trust framework)`);
  }
}

export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? (options.log ? loggerFromSink(options.log, config.logLevel) : createLogger({ level: config.logLevel }));
  // Every LogSink caller writes through pino: redacted, scrubbed, with the request id.
  const log = logSink(logger);
  const metrics = options.metrics ?? createMetrics({ defaultMetrics: config.metricsPort !== undefined });
  const now = options.now ?? (() => new Date());

  const tls = { cert: readRequired(config.tlsCertFile, 'TLS_CERT_FILE'), key: readRequired(config.tlsKeyFile, 'TLS_KEY_FILE') };
  const clientCa = readRequired(config.clientCaFile, 'CLIENT_CA_FILE').toString('utf8');
  const knownIssuers = existsSync(config.clientIssuersFile) ? readFileSync(config.clientIssuersFile, 'utf8') : '';
  const trust = new ClientCertificateTrust({ rootsPem: clientCa, intermediatesPem: knownIssuers });
  // Revocation (CRL_URLS / CRL_FILES): loaded before anything else opens, so a failure leaks nothing.
  const crlSources = crlSourcesFromConfig({
    urls: config.crlUrls.join(','), files: config.crlFiles.join(','),
    ca: config.crlCaFile ? readRequired(config.crlCaFile, 'CRL_CA_FILE').toString('utf8') : undefined,
  });
  let revocation: RevocationLists | undefined;
  let verifier: ClientCertificateVerifier = trust;
  if (crlSources.length > 0) {
    revocation = new RevocationLists({ sources: crlSources, caCertificatesPem: clientCa + knownIssuers, log, now, startTimeoutMs: config.crlStartTimeout * 1000 });
    await revocation.start(); // rejects with one line: "CRL source <url> could not be loaded within 30 s: <why>"
    for (const issuer of revocation.uncoveredIssuers()) log({ msg: 'no CRL loaded for a trusted CA: its certificates will be refused', issuer });
    verifier = withRevocationCheck(trust, revocation, { intermediates: config.crlIntermediates });
    metrics.watchRevocation(revocation);
  }
  const proxies = new TrustedProxies(config.trustedProxies);

  let outbox: OutboxWorker | undefined;
  const domain = await openDomain(config, { now, log, refreshLicenses: true, onMessageQueued: () => outbox?.nudge() });
  const { keys, catalog, names, smeAccounts, permissionStore, audit, outboxStore, permissions, dataPeriodMonths } = domain;
  const store = instrumentOidcStore(domain.oidcStore, metrics);
  observeAuditLog(audit, metrics);
  metrics.watchOutbox(outboxStore);
  const pages = new Pages(config.operatorName);
  const resourceIndicator = `${config.issuer}/data`;
  outbox = new OutboxWorker(outboxStore, messageDeliverer(config), {
    pollMs: 2_000, initialBackoffMs: 1_000, maxBackoffMs: 10 * 60_000, giveUpAfterMs: config.outboxGiveUpAfter * 1000, now,
  }, async (message, outcome, error) => {
    metrics.outboxDelivery(outcome);
    if (outcome === 'retry') return;
    await audit.append({ kind: outcome === 'delivered' ? 'message_delivered' : 'message_given_up', at: now(), actor: 'system', detail: { message: message.id, target: message.target, attempts: message.attempts + 1, error } });
  });

  const provider = createProvider({
    issuer: config.issuer,
    keys,
    store,
    catalog,
    smeAccounts,
    resourceIndicator,
    resourceServers: config.resourceServers,
    accessTokenTtl: config.accessTokenTtl,
    permissions: permissionStore,
    dataPeriodMonths,
    now,
    renderError: async (ctx, out) => {
      noteOAuthError(ctx, out.error);
      ctx.type = 'html';
      ctx.body = pages.render('error', {
        title: 'Request not accepted', heading: 'This request could not be completed',
        message: out.error_description ?? 'Go back to the service that sent you here and try again.', code: out.error,
      });
    },
  });
  noteStoreFailures(provider);
  observeProvider(provider as unknown as ProviderEvents, metrics);
  // Client authentication failures carry no detail in responses; log their reason instead.
  for (const event of ['server_error', 'grant.error', 'introspection.error', 'revocation.error', 'pushed_authorization_request.error', 'authorization.error'] as const) {
    (provider as unknown as NodeJS.EventEmitter).on(event, (_ctx: unknown, err: Error & { error_description?: string }) => {
      log({ msg: event, error: err?.name, description: err?.error_description ?? (event === 'server_error' ? err?.message : undefined) });
    });
  }

  // Rate limits: in memory on the embedded store (per process), in Redis with STORAGE=mongo (shared).
  const rateStore: RateLimitStore = config.storage === 'mongo' && config.redisUrl
    ? await RedisRateLimitStore.connect(config.redisUrl, { connectTimeoutMs: config.storeTimeoutMs })
    : new MemoryRateLimitStore();
  const limiterOptions = {
    onLimited: (rule: string) => metrics.rateLimited(rule),
    onStoreError: (error: unknown, rule: string) => log({ msg: 'rate limit store failed; request let through', rule, error: (error as Error)?.name }),
  };
  const signIn = signInLimits({
    perIp: new RateLimiter(rateStore, { name: 'sign-in-ip', ...config.rateLimitSignInIp }, limiterOptions),
    perAccount: new RateLimiter(rateStore, { name: 'sign-in-account', ...config.rateLimitSignInAccount }, limiterOptions),
    answer: (ctx, decision) => {
      ctx.type = 'html';
      ctx.body = pages.render('error', {
        title: 'Too many attempts', heading: 'Too many sign-in attempts',
        message: `For your security, please wait ${Math.ceil(decision.retryAfterSeconds / 60)} minute(s) before trying again.`, code: 'rate_limited',
      });
    },
  });
  const clientLimiter = new RateLimiter(rateStore, { name: 'client', ...config.rateLimitClient }, limiterOptions);

  const metadata = serveMetadata({ issuer: config.issuer, mtlsOrigin: config.mtlsOrigin, licenses: catalog.urls() });

  // Public listener: browsers. Composed here, one job per middleware.
  const publicApp = new Koa({ keys: keys.cookieKeys });
  if (!proxies.empty) {
    publicApp.proxy = true;
    publicApp.use(trustedForwarding(proxies));
  }
  publicApp.use(requestLogger({ logger, listener: 'public' }));
  publicApp.use(metrics.httpMetrics('public'));
  publicApp.use(securityHeaders());
  publicApp.use(pageErrors(pages, log));
  publicApp.use(storeUnavailableAnswers('person', pages));
  publicApp.use(publicListenerOnly(config.mtlsOrigin));
  publicApp.use(metadata);
  publicApp.use(pushedRequestsOnly(ROUTES.authorization, pages));
  publicApp.use(staticAssets(path.join(import.meta.dirname, 'views/assets'), ['site.css', 'favicon.svg']));
  publicApp.use(healthRoutes(store, revocation));
  publicApp.use(signIn.middleware);
  const csrf = new CsrfTokens(keys.csrfSecret);
  const parties = { CAP: config.capName, EDP: config.edpName, capProcess: `visiting your permissions dashboard at ${config.issuer}/dashboard`, edpPrivacyPolicyUrl: config.edpPrivacyPolicyUrl };
  const interactions = interactionRoutes({ provider, smeAccounts, catalog, csrf, pages, names, permissions, audit, dataPeriodMonths, parties, resourceIndicator, now, signInLimits: signIn });
  const dashboard = dashboardRoutes({ smeAccounts, sessions: domain.sessions, permissions, audit, catalog, names, csrf, pages, issuer: config.issuer, now, signInLimits: signIn });
  const evidence = evidenceRoutes({
    store: permissionStore, smeAccounts, catalog, names, pages, now,
    parties: (clientId, licenseUrl) => partiesFor(catalog.get(licenseUrl) ?? { requiredRole: '' }, names.of(clientId).organisation, parties),
  });
  publicApp.use(interactions.routes());
  publicApp.use(dashboard.routes());
  publicApp.use(evidence.routes());
  publicApp.use(mount(provider as unknown as Koa));

  // mTLS listener: machines with member certificates.
  const mtlsApp = new Koa({ keys: keys.cookieKeys });
  if (!proxies.empty) {
    mtlsApp.proxy = true;
    mtlsApp.use(trustedForwarding(proxies));
    if (config.clientCertHeader) {
      mtlsApp.use(proxyClientCertificate({ proxies, header: config.clientCertHeader, chainHeader: config.clientCertChainHeader, log }));
    }
  }
  mtlsApp.use(requestLogger({ logger, listener: 'mtls' }));
  mtlsApp.use(metrics.httpMetrics('mtls'));
  mtlsApp.use(verifyClientCertificate(verifier, now));
  mtlsApp.use(securityHeaders());
  mtlsApp.use(storeUnavailableAnswers('machine'));
  mtlsApp.use(mtlsListenerOnly());
  mtlsApp.use(metadata);
  mtlsApp.use(healthRoutes(store, revocation));
  mtlsApp.use(requireClientCertificate());
  mtlsApp.use(clientRateLimit(clientLimiter, [ROUTES.pushed_authorization_request, ROUTES.token]));
  mtlsApp.use(introspectionGate(ROUTES.introspection, config.resourceServers));
  if (!options.libraryIntrospection) mtlsApp.use(introspectTokens({ provider, path: ROUTES.introspection }));
  mtlsApp.use(permissionEndpoint(PERMISSION_PATH, { store: permissionStore, provider, issuer: config.issuer }));
  mtlsApp.use(machineAudit({ par: ROUTES.pushed_authorization_request, revocation: ROUTES.revocation }, { audit, permissions, now }));
  mtlsApp.use(mount(provider as unknown as Koa));

  const publicTls = { minVersion: 'TLSv1.2' as const, ciphers: FAPI_TLS12_CIPHERS, honorCipherOrder: true };
  // The CA list tells clients which certificate to present and lets OpenSSL build the chain;
  // the verdict itself is ours (pki/client-certificate.ts).
  const mtlsTls = { minVersion: 'TLSv1.3' as const, ca: [clientCa, knownIssuers].filter(Boolean) };
  // Slow or idle clients are cut off: headers within 10 s, a whole request within 30 s, idle
  // keep-alive after 5 s, TLS handshakes within 10 s (Node's defaults allow minutes).
  const limits = { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 1_000, handshakeTimeout: 10_000 };
  const publicServer = https.createServer({ ...tls, ...publicTls, ...limits }, publicApp.callback());
  const mtlsServer = https.createServer({ ...tls, ...mtlsTls, ...limits, requestCert: true, rejectUnauthorized: false }, mtlsApp.callback());
  for (const server of [publicServer, mtlsServer]) {
    server.maxHeadersCount = 100;
    server.maxConnections = 4_096;
  }
  const stopWatchingTls = reloadCertificatesOnChange({ cert: config.tlsCertFile, key: config.tlsKeyFile },
    [{ server: publicServer, options: publicTls }, { server: mtlsServer, options: mtlsTls }], log);

  const listen = (server: https.Server, port: number) => new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, config.listenHost, () => resolve((server.address() as AddressInfo).port));
  });
  const worker = outbox;
  let metricsServer: MetricsServer | undefined;
  let expiryTimer: NodeJS.Timeout | undefined;
  // Before the listeners accept anything, so that every request is tracked.
  const shutdown = createShutdown({
    servers: [publicServer, mtlsServer],
    deadlineMs: config.shutdownTimeout * 1000,
    log,
    closers: [
      { name: 'timers', close: () => { clearInterval(expiryTimer); stopWatchingTls(); revocation?.stop(); } },
      { name: 'outbox worker', close: () => worker.stop() },
      { name: 'rate limit store', close: () => rateStore.close() },
      { name: 'stores', close: () => domain.close() },
      { name: 'metrics listener', close: () => metricsServer?.close() },
    ],
  });
  const publicPort = await listen(publicServer, config.publicPort);
  const mtlsPort = await listen(mtlsServer, config.mtlsPort);
  if (config.metricsPort !== undefined && cluster.isWorker) {
    shareMetricsWithPrimary(metrics); // the primary serves every worker's sum (main.ts)
  } else if (config.metricsPort !== undefined) {
    const ready = readinessCheck({ store, revocation });
    metricsServer = await startMetricsServer({
      host: config.metricsHost, port: config.metricsPort, registry: metrics.registry,
      // Not ready once shutting down, so that the orchestrator stops sending traffic first.
      ready: async () => (shutdown.started ? { ok: false, details: { status: 'shutting down' } } : ready()),
    });
  }
  outbox.start();
  expiryTimer = setInterval(() => void permissions.recordExpiries().catch((err: Error) => log({ msg: 'expiry sweep failed', error: err.name })), 60_000);
  expiryTimer.unref();

  return {
    config, provider, smeAccounts, permissions, audit, outbox: worker, outboxStore, publicPort, mtlsPort,
    metrics, metricsPort: metricsServer?.port, shutdown,
    async close() {
      await shutdown.shutdown('close');
    },
  };
}

/** Delivery of messages to clients with the operator's member certificate, if it has one. */
function messageDeliverer(config: ServerConfig): Deliver {
  if (!existsSync(config.operatorCertFile) || !existsSync(config.operatorKeyFile)) {
    return async () => { throw new Error(`no operator certificate at ${config.operatorCertFile}: cannot deliver messages`); };
  }
  return mtlsDeliverer({
    cert: readFileSync(config.operatorCertFile, 'utf8'), key: readFileSync(config.operatorKeyFile, 'utf8'),
    ca: config.outboundCaFile ? readFileSync(config.outboundCaFile, 'utf8') : undefined,
  });
}

function healthRoutes(store: { ping(): Promise<void> }, revocation?: RevocationLists): Koa.Middleware {
  return async function health(ctx, next) {
    if (ctx.path === '/health/live') {
      ctx.body = { status: 'live' };
      return;
    }
    if (ctx.path === '/health/ready') {
      try {
        await store.ping();
      } catch {
        ctx.status = 503;
        ctx.body = { status: 'not ready', store: 'unreachable' };
        return;
      }
      // Expired or never-loaded CRLs mean every certificate of that issuer is refused: not ready.
      const crl = revocation?.status();
      if (crl && !crl.every((source) => source.state === 'ok' || source.state === 'stale')) {
        ctx.status = 503;
        ctx.body = { status: 'not ready', crl };
        return;
      }
      ctx.body = { status: 'ready', ...(crl ? { crl } : {}) };
      return;
    }
    await next();
  };
}
