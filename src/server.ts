import { readFileSync, existsSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';

import Koa from 'koa';
import mount from 'koa-mount';
import type Provider from 'oidc-provider';

import { openSqliteDatabase } from './adapters/sqlite-database.ts';
import { SqliteOidcStore } from './adapters/sqlite-oidc-store.ts';
import type { ServerConfig } from './config/environment.ts';
import { LicenseCatalog } from './consent/licenses.ts';
import { SmeAccounts } from './consent/sme-accounts.ts';
import { requireClientCertificate, verifyClientCertificate } from './http/client-certificate.ts';
import { CsrfTokens } from './http/csrf.ts';
import { introspectionGate } from './http/introspection-gate.ts';
import { mtlsListenerOnly, publicListenerOnly } from './http/listeners.ts';
import { pushedRequestsOnly } from './http/pushed-requests-only.ts';
import { serveMetadata } from './http/metadata.ts';
import { pageErrors } from './http/page-errors.ts';
import { requestLog, stdoutSink, type LogSink } from './http/request-log.ts';
import { securityHeaders } from './http/security-headers.ts';
import { staticAssets } from './http/static-assets.ts';
import { ApplicationNames } from './interactions/application-names.ts';
import { interactionRoutes } from './interactions/routes.ts';
import { ClientCertificateTrust } from './pki/client-certificate.ts';
import { createProvider, ROUTES } from './provider/index.ts';
import { loadOrCreateKeys } from './provider/keys.ts';
import { Pages } from './views/render.ts';

/** TLS 1.2 suites the FAPI 2.0 Security Profile allows (TLS 1.3 suites are all allowed). */
const FAPI_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-AES128-GCM-SHA256', 'DHE-RSA-AES256-GCM-SHA384',
].join(':');

export interface StartOptions {
  log?: LogSink;
  /** The clock for permission dates and certificate validity (tests move it). */
  now?: () => Date;
}

export interface RunningServer {
  config: ServerConfig;
  provider: Provider;
  smeAccounts: SmeAccounts;
  publicPort: number;
  mtlsPort: number;
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
  const log = options.log ?? stdoutSink;
  const now = options.now ?? (() => new Date());

  const tls = { cert: readRequired(config.tlsCertFile, 'TLS_CERT_FILE'), key: readRequired(config.tlsKeyFile, 'TLS_KEY_FILE') };
  const clientCa = readRequired(config.clientCaFile, 'CLIENT_CA_FILE').toString('utf8');
  const knownIssuers = existsSync(config.clientIssuersFile) ? readFileSync(config.clientIssuersFile, 'utf8') : '';
  const trust = new ClientCertificateTrust({ rootsPem: clientCa, intermediatesPem: knownIssuers });

  const keys = await loadOrCreateKeys(config.dataDir);
  const db = openSqliteDatabase(path.join(config.dataDir, 'perseus.sqlite'));
  const store = new SqliteOidcStore(db, { closeDatabase: false });
  const smeAccounts = new SmeAccounts(db, keys.accountSecret);
  const catalog = LicenseCatalog.load({ selection: config.licenses, operatorRole: config.operatorRole });
  const pages = new Pages(config.operatorName);
  const resourceIndicator = `${config.issuer}/data`;

  const provider = createProvider({
    issuer: config.issuer,
    keys,
    store,
    catalog,
    smeAccounts,
    resourceIndicator,
    resourceServers: config.resourceServers,
    accessTokenTtl: config.accessTokenTtl,
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = pages.render('error', {
        title: 'Request not accepted', heading: 'This request could not be completed',
        message: out.error_description ?? 'Go back to the service that sent you here and try again.', code: out.error,
      });
    },
  });
  // Client authentication failures carry no detail in responses; log their reason instead.
  for (const event of ['server_error', 'grant.error', 'introspection.error', 'revocation.error', 'pushed_authorization_request.error', 'authorization.error'] as const) {
    (provider as unknown as NodeJS.EventEmitter).on(event, (_ctx: unknown, err: Error & { error_description?: string }) => {
      log({ msg: event, error: err?.name, description: err?.error_description ?? (event === 'server_error' ? err?.message : undefined) });
    });
  }

  const metadata = serveMetadata({ issuer: config.issuer, mtlsOrigin: config.mtlsOrigin, licenses: catalog.urls() });

  // Public listener: browsers. Composed here, one job per middleware.
  const publicApp = new Koa({ keys: keys.cookieKeys });
  publicApp.use(requestLog('public', log));
  publicApp.use(securityHeaders());
  publicApp.use(pageErrors(pages, log));
  publicApp.use(publicListenerOnly(config.mtlsOrigin));
  publicApp.use(metadata);
  publicApp.use(pushedRequestsOnly(ROUTES.authorization, pages));
  publicApp.use(staticAssets(path.join(import.meta.dirname, 'views/assets'), ['site.css']));
  publicApp.use(healthRoutes(store));
  const interactions = interactionRoutes({
    provider, smeAccounts, catalog, csrf: new CsrfTokens(keys.csrfSecret), pages,
    names: new ApplicationNames(config.directoryFile),
    parties: { CAP: config.capName, EDP: config.edpName, capProcess: `visiting your permissions dashboard at ${config.issuer}/dashboard`, edpPrivacyPolicyUrl: config.edpPrivacyPolicyUrl },
    resourceIndicator, now,
  });
  publicApp.use(interactions.routes());
  publicApp.use(mount(provider as unknown as Koa));

  // mTLS listener: machines with member certificates.
  const mtlsApp = new Koa({ keys: keys.cookieKeys });
  mtlsApp.use(verifyClientCertificate(trust, now));
  mtlsApp.use(requestLog('mtls', log));
  mtlsApp.use(securityHeaders());
  mtlsApp.use(mtlsListenerOnly());
  mtlsApp.use(metadata);
  mtlsApp.use(healthRoutes(store));
  mtlsApp.use(requireClientCertificate());
  mtlsApp.use(introspectionGate(ROUTES.introspection, config.resourceServers));
  mtlsApp.use(mount(provider as unknown as Koa));

  const publicServer = https.createServer({ ...tls, minVersion: 'TLSv1.2', ciphers: FAPI_TLS12_CIPHERS, honorCipherOrder: true }, publicApp.callback());
  const mtlsServer = https.createServer({
    ...tls, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false,
    // The CA list tells clients which certificate to present and lets OpenSSL build the chain;
    // the verdict itself is ours (pki/client-certificate.ts).
    ca: [clientCa, knownIssuers].filter(Boolean),
  }, mtlsApp.callback());

  const listen = (server: https.Server, port: number) => new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, config.listenHost, () => resolve((server.address() as AddressInfo).port));
  });
  const publicPort = await listen(publicServer, config.publicPort);
  const mtlsPort = await listen(mtlsServer, config.mtlsPort);

  return {
    config, provider, smeAccounts, publicPort, mtlsPort,
    async close() {
      const stop = (server: https.Server) => new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await Promise.all([stop(publicServer), stop(mtlsServer)]);
      await store.close();
      db.close();
    },
  };
}

function healthRoutes(store: { ping(): Promise<void> }): Koa.Middleware {
  return async function health(ctx, next) {
    if (ctx.path === '/health/live') {
      ctx.body = { status: 'live' };
      return;
    }
    if (ctx.path === '/health/ready') {
      try {
        await store.ping();
        ctx.body = { status: 'ready' };
      } catch {
        ctx.status = 503;
        ctx.body = { status: 'not ready', store: 'unreachable' };
      }
      return;
    }
    await next();
  };
}
