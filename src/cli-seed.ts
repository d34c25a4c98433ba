/**
 * `npm run cli -- seed …`: bulk data for benchmarks and capacity tests (bench/run.ts uses it).
 *
 *   seed smes --count N --password P [--prefix X]
 *       N SMEs that can sign in: organisation `X SME <i>`, user `X-<i>@sme.bench.example`, one
 *       electricity meter each. One scrypt hash (real parameters) is computed and shared.
 *   seed permissions --count N --client URL [--client-cert PEM] [--access-token-ttl S] [--batch B]
 *       [--max-seconds S] [--out FILE] [--sample K] [--prefix X]
 *       N active permissions of N SMEs for the client, each with its oidc-provider Grant, an
 *       access token (bound to the certificate's thumbprint when --client-cert is given), a
 *       refresh token and the refresh token's link: what a completed flow leaves behind.
 *       --out writes a uniform sample of K (default 20000) of them as JSON lines
 *       `{"accessToken","refreshToken","grantId"}`: token values in clear, for load tests only.
 *   seed codes --count N --client URL --redirect-uri URL --code-challenge C [--code-ttl S] --out FILE
 *       N authorization codes (PKCE S256 with the given challenge), each on its own new grant and
 *       permission, as the authorization endpoint leaves them; --out lists the codes, one a line.
 *
 * How: the first record of every command goes through the real code paths (Permissions.grant,
 * oidc-provider's Grant, AccessToken, RefreshToken and AuthorizationCode models saved through the
 * configured store, so token recording and the audit log run too). Its stored payloads are the
 * template of the others, which are written directly to the stores in batches: one transaction
 * per batch on SQLite, insertMany on MongoDB, pipelined scripts on Redis (the Redis store's own
 * upsert). What is written is what the stores write themselves (same hashing, payload
 * preparation, documents and rows), and a sample is read back through the real stores at the end;
 * a mismatch fails the command. Audit events are written only for the first record.
 *
 * --max-seconds stops after the batch that passes the time budget (the report says how many were
 * written): MongoDB-compatible servers without bulk paths (FerretDB v1) cannot take millions of
 * documents in minutes.
 *
 * Hook into src/cli.ts: `if (group === 'seed') { await runSeed([command, ...rest], config); return; }`
 * (and add the three `seed …` commands to COMMANDS and SEED_USAGE to USAGE). Runs stand-alone too:
 * `node src/cli-seed.ts permissions --count 1000 …` with the server's environment.
 */
import { createHmac, createSecretKey, randomFillSync, randomUUID, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import type { DatabaseSync, StatementSync } from 'node:sqlite';

import type { mongo } from 'mongoose';
import type Provider from 'oidc-provider';

import { expiresAtFor, hashIdentifier, preparePayload } from './adapters/oidc-adapter-common.ts';
import { MongoOidcStore } from './adapters/mongo-oidc-store.ts';
import { openOidcStore } from './adapters/open-store.ts';
import { RedisOidcStore } from './adapters/redis-oidc-store.ts';
import { RoutedOidcStore } from './adapters/routed-oidc-store.ts';
import { openSqliteDatabase } from './adapters/sqlite-database.ts';
import type { AdapterPayload } from './adapters/types.ts';
import { ConfigError, loadConfig, type ServerConfig } from './config/environment.ts';
import { defaultDataAvailableFrom } from './consent/data-period.ts';
import { openDomain, type Domain } from './consent/domain.ts';
import { permissionExpiry, type License } from './consent/licenses.ts';
import { claimKey, domainCollections } from './consent/mongo-common.ts';
import { initialiseProductionIndexes } from './consent/production-stores.ts';
import { hashPassword } from './consent/passwords.ts';
import { permissionStatus } from './consent/permission-record.ts';
import { TokenSeal } from './consent/token-seal.ts';
import { createProvider } from './provider/index.ts';

export const SEED_USAGE = `  npm run cli -- seed smes --count <n> --password <password> [--prefix <text>]
  npm run cli -- seed permissions --count <n> --client <application URL> [--client-cert <PEM>] [--access-token-ttl <s>] [--batch <n>] [--max-seconds <s>] [--out <file>] [--sample <n>] [--prefix <text>]
  npm run cli -- seed codes --count <n> --client <application URL> --redirect-uri <https URL> --code-challenge <S256 challenge> [--code-ttl <s>] --out <file> [--prefix <text>]`;

export const SEED_COMMANDS = ['smes', 'permissions', 'codes'] as const;

export class SeedUsageError extends Error {}

export interface SeedReport {
  command: (typeof SEED_COMMANDS)[number];
  requested: number;
  /** Records written (fewer than requested when --max-seconds cut the run short). */
  seeded: number;
  seconds: number;
  perSecond: number;
  capped: boolean;
  storage: ServerConfig['storage'];
  out?: string;
}

const METER_OUTCODE = 'SW1A';
const OWNERSHIP = 'Seeded for a benchmark (cli seed)';

// --- the rows a seeded record is made of -------------------------------------------------------

interface SmeRow {
  orgId: string;
  orgName: string;
  createdAt: Date;
  meterId: string;
  meterIdentifier: string;
  user?: { id: string; email: string; passwordHash: string };
}

interface OidcRow {
  model: string;
  id: string;
  payload: AdapterPayload;
  /** Seconds; undefined never expires. The payload's `exp`, when it has one, wins (see expiresInAt). */
  expiresIn: number | undefined;
}

/** Seconds from `nowMs` until the row expires: until its payload's `exp` (the template's times are reused). */
function expiresInAt(o: OidcRow, nowMs: number): number | undefined {
  return typeof o.payload.exp === 'number' ? Math.max(1, o.payload.exp - nowMs / 1000) : o.expiresIn;
}

interface PermissionRow {
  sme: SmeRow;
  clientId: string;
  accountId: string;
  permissionId: string;
  evidenceId: string;
  license: License;
  grantId: string;
  at: Date;
  expires: Date;
  dataAvailableFrom: Date;
  userId: string;
  /** Grant, then tokens or code: in the order they are written. */
  oidc: OidcRow[];
  token?: { issuedAt: Date; expires: Date };
  refreshLink?: { tokenHash: string; sealed: string; issuedAt: Date; expiresAt: Date };
}

interface BulkWriter {
  smes(rows: SmeRow[]): Promise<void>;
  permissions(rows: PermissionRow[]): Promise<void>;
  close(): Promise<void>;
}

// --- SQLite --------------------------------------------------------------------------------------

class SqliteBulkWriter implements BulkWriter {
  readonly #db: DatabaseSync;
  readonly #s: Record<string, StatementSync>;

  constructor(file: string) {
    this.#db = openSqliteDatabase(file);
    // A bulk load inserts random keys into large indexes: a big page cache for this connection
    // only keeps them from being read and written back page by page.
    // Also for this connection only: no fsync (a crashed seed is seeded again) and fewer, larger
    // checkpoints. The server's connections keep their own settings.
    this.#db.exec('PRAGMA cache_size = -2097152');
    this.#db.exec('PRAGMA synchronous = OFF');
    this.#db.exec('PRAGMA wal_autocheckpoint = 65536');
    const p = (sql: string) => this.#db.prepare(sql);
    this.#s = {
      org: p('INSERT INTO organisation (id, name, created_at) VALUES (?, ?, ?)'),
      meter: p('INSERT INTO meter (id, organisation_id, identifier, fuel, outcode, ownership_evidence) VALUES (?, ?, ?, ?, ?, ?)'),
      user: p('INSERT INTO sme_user (id, organisation_id, email, password_hash, created_at) VALUES (?, ?, ?, ?, ?)'),
      account: p('INSERT INTO client_account (account_id, organisation_id, client_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING'),
      permission: p(`INSERT INTO permission (id, organisation_id, client_id, license, account, grant_id, first_granted, last_granted,
        expires, data_available_from, token_issued_at, token_expires, permission_text_sha256, meters, evidence_id)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      permissionGrant: p('INSERT INTO permission_grant (grant_id, permission_id) VALUES (?, ?)'),
      event: p('INSERT INTO permission_event (permission_id, at, kind, actor, detail) VALUES (?, ?, ?, ?, ?)'),
      evidence: p('INSERT INTO evidence_link (organisation_id, client_id, evidence_id) VALUES (?, ?, ?)'),
      link: p(`INSERT INTO refresh_token_link (token_hash, grant_id, client_id, sealed_token, issued_at, expires_at)
        VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING`),
      oidc: p(`INSERT INTO oidc_model (model, key, payload, grant_id, uid, user_code, expires_at, consumed_at, jti_redacted)
        VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)`),
    };
  }

  #transaction(work: () => void): void {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      work();
      this.#db.exec('COMMIT');
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw error;
    }
  }

  #sme(r: SmeRow): void {
    const created = r.createdAt.toISOString();
    this.#s.org.run(r.orgId, r.orgName, created);
    this.#s.meter.run(r.meterId, r.orgId, r.meterIdentifier, 'electricity', METER_OUTCODE, OWNERSHIP);
    if (r.user) this.#s.user.run(r.user.id, r.orgId, r.user.email, r.user.passwordHash, created);
  }

  async smes(rows: SmeRow[]): Promise<void> {
    this.#transaction(() => rows.forEach((r) => this.#sme(r)));
  }

  async permissions(rows: PermissionRow[]): Promise<void> {
    const now = Date.now();
    this.#transaction(() => {
      for (const r of rows) {
        this.#sme(r.sme);
        this.#s.account.run(r.accountId, r.sme.orgId, r.clientId);
        this.#s.evidence.run(r.sme.orgId, r.clientId, r.evidenceId);
        this.#s.permission.run(r.permissionId, r.sme.orgId, r.clientId, r.license.url, r.accountId, r.grantId, r.at.getTime(), r.at.getTime(),
          r.expires.getTime(), r.dataAvailableFrom.getTime(), r.token?.issuedAt.getTime() ?? null, r.token?.expires.getTime() ?? null,
          r.license.permissionTextSha256, JSON.stringify([r.sme.meterId]), r.evidenceId);
        this.#s.permissionGrant.run(r.grantId, r.permissionId);
        this.#s.event.run(r.permissionId, r.at.getTime(), 'granted', r.userId, JSON.stringify(grantedDetail(r)));
        if (r.token) this.#s.event.run(r.permissionId, r.token.issuedAt.getTime(), 'token_issued', r.clientId, JSON.stringify({ tokenExpires: r.token.expires.toISOString() }));
        if (r.refreshLink) {
          this.#s.link.run(r.refreshLink.tokenHash, r.grantId, r.clientId, r.refreshLink.sealed, r.refreshLink.issuedAt.getTime(), r.refreshLink.expiresAt.getTime());
        }
        for (const o of r.oidc) {
          // Exactly what SqliteOidcStore.prepareUpsert stores.
          const prepared = preparePayload(o.id, o.payload, now);
          this.#s.oidc.run(o.model, hashIdentifier(o.id), JSON.stringify(prepared.body), prepared.grantId, prepared.uidHash, prepared.userCodeHash,
            expiresAtFor(expiresInAt(o, now), now), prepared.jtiRedacted ? 1 : 0);
        }
      }
    });
  }

  async close(): Promise<void> {
    // Closing checkpoints only when no other connection has the file open; the server usually
    // has. Without this the server's next commit copies the whole bulk WAL (hundreds of MB with
    // wal_autocheckpoint 65536) inside a request: measured 480 ms for a 280 MB WAL. TRUNCATE
    // also empties the WAL file; if the server is mid-read it reports busy, and nothing is lost.
    this.#db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    this.#db.close();
  }
}

function grantedDetail(r: PermissionRow): Record<string, unknown> {
  return { license: r.license.url, expires: r.expires.toISOString(), meters: [r.sme.meterId], permissionTextSha256: r.license.permissionTextSha256, grantId: r.grantId };
}

// --- MongoDB + Redis -----------------------------------------------------------------------------

let lastStamp = 0;
/** Microsecond history stamps, as MongoPermissionStore makes them. */
function nextStamp(): number {
  lastStamp = Math.max(Date.now() * 1000, lastStamp + 1);
  return lastStamp;
}

class ProductionBulkWriter implements BulkWriter {
  readonly #store: RoutedOidcStore;
  readonly #db: mongo.Db;
  readonly #n = domainCollections();
  readonly #redisConcurrency = 256;

  private constructor(store: RoutedOidcStore, db: mongo.Db) {
    this.#store = store;
    this.#db = db;
  }

  static async open(config: ServerConfig): Promise<ProductionBulkWriter> {
    const store = await openOidcStore({ storage: 'mongo', mongodbUri: config.mongodbUri!, redisUrl: config.redisUrl!, connectTimeoutMs: config.storeTimeoutMs });
    if (!(store instanceof RoutedOidcStore)) throw new Error('STORAGE=mongo did not open the routed MongoDB + Redis store');
    const mongoStore = store.stores.find((s): s is MongoOidcStore => s instanceof MongoOidcStore);
    const db = mongoStore?.connection.db;
    if (!db) throw new Error('no MongoDB connection');
    return new ProductionBulkWriter(store, db);
  }

  async #insert(collection: string, docs: mongo.Document[]): Promise<void> {
    if (docs.length === 0) return;
    // Bulk load: acknowledged by the server it was sent to (w: 1), unordered.
    await this.#db.collection(collection).insertMany(docs, { ordered: false, writeConcern: { w: 1 } });
  }

  #smeDocs(rows: SmeRow[]) {
    return {
      organisations: rows.map((r) => ({ _id: r.orgId, name: r.orgName, createdAt: r.createdAt })),
      names: rows.map((r) => ({ _id: r.orgName, organisationId: r.orgId })),
      meters: rows.map((r) => ({
        _id: claimKey(r.orgId, r.meterIdentifier), id: r.meterId, organisationId: r.orgId, identifier: r.meterIdentifier,
        fuel: 'electricity', outcode: METER_OUTCODE, ownershipEvidence: OWNERSHIP,
      })),
      users: rows.filter((r) => r.user).map((r) => ({ _id: r.user!.email, id: r.user!.id, organisationId: r.orgId, passwordHash: r.user!.passwordHash, createdAt: r.createdAt })),
    };
  }

  async smes(rows: SmeRow[]): Promise<void> {
    const d = this.#smeDocs(rows);
    await Promise.all([
      this.#insert(this.#n.smeOrganisations, d.organisations), this.#insert(this.#n.smeOrganisationNames, d.names),
      this.#insert(this.#n.smeMeters, d.meters), this.#insert(this.#n.smeUsers, d.users),
    ]);
  }

  async permissions(rows: PermissionRow[]): Promise<void> {
    const now = Date.now();
    const d = this.#smeDocs(rows.map((r) => r.sme));
    // The layout of MongoPermissionStore: chain event, head hint and grant link per record; token issues apart.
    const events: mongo.Document[] = [];
    const heads: mongo.Document[] = [];
    const grantLinks: mongo.Document[] = [];
    const tokenEvents: mongo.Document[] = [];
    for (const r of rows) {
      const state = {
        grantId: r.grantId, lastGranted: r.at, expires: r.expires, dataAvailableFrom: r.dataAvailableFrom,
        permissionTextSha256: r.license.permissionTextSha256, meters: [r.sme.meterId], revoked: null, revokedBy: null, revokedReason: null, expiryRecorded: false,
      };
      const stamp = nextStamp();
      events.push({
        _id: `${r.permissionId}:1`, permissionId: r.permissionId, seq: 1, stamp, at: r.at, kind: 'granted', actor: r.userId,
        detail: grantedDetail(r), state, grantId: r.grantId, expiryDue: r.expires,
      });
      heads.push({ _id: r.permissionId, permissionId: r.permissionId, seq: 1, stamp, state });
      grantLinks.push({ _id: r.grantId, permissionId: r.permissionId });
      if (r.token) {
        tokenEvents.push({
          _id: `${r.permissionId}:t:${random(9).toString('base64url')}`, permissionId: r.permissionId, stamp: nextStamp(), at: r.token.issuedAt,
          kind: 'token_issued', actor: r.clientId, detail: { tokenExpires: r.token.expires.toISOString() },
        });
      }
    }
    const mongoOidc = new Map<string, mongo.Document[]>();
    const redisOidc: OidcRow[] = [];
    for (const o of rows.flatMap((r) => r.oidc)) {
      const target = this.#store.storeFor(o.model);
      if (target instanceof RedisOidcStore) {
        redisOidc.push(o);
        continue;
      }
      if (!(target instanceof MongoOidcStore)) throw new Error(`${o.model}: unexpected store ${target.name}`);
      // Exactly the document MongoOidcStore.upsert creates.
      const prepared = preparePayload(o.id, o.payload, now);
      const expiresAt = expiresAtFor(expiresInAt(o, now), now);
      const name = target.collectionName(o.model);
      const docs = mongoOidc.get(name) ?? [];
      docs.push({
        _id: hashIdentifier(o.id), payload: JSON.stringify(prepared.body), jtiRedacted: prepared.jtiRedacted, grantId: prepared.grantId,
        uid: prepared.uidHash, userCode: prepared.userCodeHash, expiresAt: expiresAt === null ? null : new Date(expiresAt),
        consumedAt: null, generation: randomUUID(), updatedAt: new Date(now),
      });
      mongoOidc.set(name, docs);
    }
    // Records and their links first, the Grant and tokens last: an interrupted batch leaves no usable token without its permission.
    await Promise.all([
      this.#insert(this.#n.smeOrganisations, d.organisations), this.#insert(this.#n.smeOrganisationNames, d.names),
      this.#insert(this.#n.smeMeters, d.meters), this.#insert(this.#n.smeUsers, d.users),
      this.#insert(this.#n.smeClientAccounts, rows.map((r) => ({ _id: claimKey(r.sme.orgId, r.clientId), accountId: r.accountId, organisationId: r.sme.orgId, clientId: r.clientId }))),
      this.#insert(this.#n.smeAccountIds, rows.map((r) => ({ _id: r.accountId, organisationId: r.sme.orgId, clientId: r.clientId }))),
      this.#insert(this.#n.evidenceLinks, rows.map((r) => ({ _id: claimKey(r.sme.orgId, r.clientId), organisationId: r.sme.orgId, clientId: r.clientId, evidenceId: r.evidenceId }))),
      this.#insert(this.#n.permissionCurrent, rows.map((r) => {
        const key = claimKey(r.sme.orgId, r.clientId, r.license.url);
        return { _id: `${key}#1`, key, generation: 1, permissionId: r.permissionId, claimedAt: r.at };
      })),
      this.#insert(this.#n.permissions, rows.map((r) => ({
        _id: r.permissionId, key: claimKey(r.sme.orgId, r.clientId, r.license.url), generation: 1, organisationId: r.sme.orgId, clientId: r.clientId,
        license: r.license.url, account: r.accountId, evidenceId: r.evidenceId, firstGranted: r.at,
        tokenIssuedAt: r.token?.issuedAt ?? null, tokenExpires: r.token?.expires ?? null,
      }))),
      this.#insert(this.#n.permissionEvents, events),
      this.#insert(this.#n.permissionHeads, heads),
      this.#insert(this.#n.permissionGrants, grantLinks),
      this.#insert(this.#n.permissionTokenEvents, tokenEvents),
      this.#insert(this.#n.refreshTokenLinks, rows.filter((r) => r.refreshLink).map((r) => ({
        _id: r.refreshLink!.tokenHash, grantId: r.grantId, clientId: r.clientId, sealedToken: r.refreshLink!.sealed,
        issuedAt: r.refreshLink!.issuedAt, expiresAt: r.refreshLink!.expiresAt,
      }))),
    ]);
    await Promise.all([...mongoOidc].map(([name, docs]) => this.#insert(name, docs)));
    for (let i = 0; i < redisOidc.length; i += this.#redisConcurrency) {
      await Promise.all(redisOidc.slice(i, i + this.#redisConcurrency).map((o) => {
        const target = this.#store.storeFor(o.model) as RedisOidcStore;
        return target.upsert(o.model, o.id, o.payload, expiresInAt(o, Date.now()));
      }));
    }
  }

  async close(): Promise<void> {
    await this.#store.close();
  }
}

// --- templates through the real code paths -------------------------------------------------------

/** Random bytes drawn from a pooled buffer (one CSPRNG call per 64 KiB instead of one per id). */
const pool = Buffer.alloc(64 * 1024);
let poolOffset = pool.length;
function random(n: number): Buffer {
  if (poolOffset + n > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  poolOffset += n;
  return pool.subarray(poolOffset - n, poolOffset);
}
/** A token-sized random id (256 bits, base64url), like oidc-provider's opaque values. */
const tokenValue = () => random(32).toString('base64url');
const prefixedId = (prefix: string) => `${prefix}_${random(12).toString('base64url')}`;
const epoch = (d: Date) => Math.floor(d.getTime() / 1000);

interface SeedContext {
  config: ServerConfig;
  domain: Domain;
  provider: Provider;
  license: License;
  resourceIndicator: string;
  writer: BulkWriter;
  seal: TokenSeal;
  prefix: string;
  close(): Promise<void>;
}

async function openContext(config: ServerConfig, prefix: string): Promise<SeedContext> {
  if (config.storage === 'mongo') await initialiseProductionIndexes(config); // idempotent, as `db init`
  const domain = await openDomain(config, { now: () => new Date() });
  const writer = config.storage === 'mongo' ? await ProductionBulkWriter.open(config) : new SqliteBulkWriter(path.join(config.dataDir, 'perseus.sqlite'));
  const resourceIndicator = `${config.issuer}/data`;
  const provider = createProvider({
    issuer: config.issuer, keys: domain.keys, store: domain.oidcStore, catalog: domain.catalog, smeAccounts: domain.smeAccounts,
    resourceIndicator, resourceServers: config.resourceServers, accessTokenTtl: config.accessTokenTtl, permissions: domain.permissionStore,
    dataPeriodMonths: domain.dataPeriodMonths, now: () => new Date(),
    renderError: async (ctx) => { ctx.body = 'error'; },
  });
  const license = domain.catalog.all()[0];
  if (!license) throw new Error('this configuration grants no license (LICENSES / OPERATOR_ROLE)');
  return {
    config, domain, provider, license, resourceIndicator, writer, seal: new TokenSeal(domain.keys.tokenSealKey), prefix,
    async close() {
      await writer.close();
      await domain.close();
    },
  };
}

function meterIdentifier(n: number): string {
  return `19${String(n % 1e11).padStart(11, '0')}`;
}

let smeCounter = 0;
function newSme(ctx: SeedContext, createdAt: Date, user?: { email: string; passwordHash: string }): SmeRow {
  smeCounter += 1;
  return {
    orgId: prefixedId('org'), orgName: `${ctx.prefix} SME ${random(6).toString('base64url')}-${smeCounter}`, createdAt,
    meterId: prefixedId('mtr'), meterIdentifier: meterIdentifier(random(5).readUIntBE(0, 5)),
    ...(user ? { user: { id: prefixedId('usr'), ...user } } : {}),
  };
}

const accountKeys = new WeakMap<Buffer, KeyObject>();
/** The account id SmeAccounts.accountFor derives (an HMAC of organisation and client). */
function accountIdFor(ctx: SeedContext, organisationId: string, clientId: string): string {
  const secret = ctx.domain.keys.accountSecret;
  let key = accountKeys.get(secret);
  if (!key) accountKeys.set(secret, (key = createSecretKey(secret)));
  return `acct_${createHmac('sha256', key).update(`${organisationId}\n${clientId}`).digest('base64url').slice(0, 32)}`;
}

interface Template {
  at: Date;
  expires: Date;
  dataAvailableFrom: Date;
  grant: AdapterPayload;
  grantExpiresIn: number;
  accessToken?: AdapterPayload;
  accessTokenExpiresIn?: number;
  refreshToken?: AdapterPayload;
  refreshTokenExpiresIn?: number;
  code?: AdapterPayload;
  codeExpiresIn?: number;
  first: { grantId: string; accessToken?: string; refreshToken?: string; code?: string; permissionId: string; accountId: string };
}

interface TemplateOptions {
  clientId: string;
  clientCertPem?: string;
  tokens?: { accessTokenTtl: number };
  code?: { redirectUri: string; codeChallenge: string; ttl: number };
}

async function find(ctx: SeedContext, model: string, id: string): Promise<AdapterPayload> {
  const payload = await ctx.domain.oidcStore.adapterFor(model).find(id);
  if (!payload) throw new Error(`seed: the ${model} just saved cannot be read back`);
  return payload;
}

/** One complete record through the real code paths; its stored payloads are the template. */
async function realRecord(ctx: SeedContext, o: TemplateOptions): Promise<Template> {
  const { provider, license, domain } = ctx;
  const at = new Date();
  const expires = permissionExpiry(at, license);
  const dataAvailableFrom = defaultDataAvailableFrom(at, domain.dataPeriodMonths(license));
  const sme = newSme(ctx, at);
  await ctx.writer.smes([sme]);
  const accountId = await domain.smeAccounts.accountFor(sme.orgId, o.clientId);
  const grantExpiresIn = Math.floor((expires.getTime() - at.getTime()) / 1000);
  const grant = new provider.Grant({ accountId, clientId: o.clientId, expiresIn: grantExpiresIn } as ConstructorParameters<Provider['Grant']>[0]);
  grant.addResourceScope(ctx.resourceIndicator, license.url);
  const grantId = await grant.save();
  const permission = await domain.permissions.grant({
    organisationId: sme.orgId, clientId: o.clientId, license: license.url, account: accountId, grantId, at, expires, dataAvailableFrom,
    permissionTextSha256: license.permissionTextSha256, meters: [sme.meterId], userId: 'seed',
  });
  const sessionUid = tokenValue();
  const t: Template = {
    at, expires, dataAvailableFrom, grant: await find(ctx, 'Grant', grantId), grantExpiresIn,
    first: { grantId, permissionId: permission.id, accountId },
  };
  if (o.tokens) {
    const accessToken = new provider.AccessToken({
      accountId, clientId: o.clientId, grantId, gty: 'authorization_code', sessionUid, scope: license.url, expiresIn: o.tokens.accessTokenTtl,
    } as unknown as ConstructorParameters<Provider['AccessToken']>[0]);
    accessToken.setAudience(ctx.resourceIndicator);
    if (o.clientCertPem) accessToken.setThumbprint('x5t', o.clientCertPem);
    const atValue = await accessToken.save(); // through TokenRecordingStore: token issue recorded and audited
    const refreshToken = new provider.RefreshToken({
      accountId, clientId: o.clientId, grantId, gty: 'authorization_code', authTime: epoch(at), resource: ctx.resourceIndicator, rotations: 0,
      scope: license.url, sessionUid, expiresIn: grantExpiresIn,
    } as unknown as ConstructorParameters<Provider['RefreshToken']>[0]);
    const rtValue = await refreshToken.save(); // linked to the permission, sealed
    Object.assign(t, {
      accessToken: await find(ctx, 'AccessToken', atValue), accessTokenExpiresIn: o.tokens.accessTokenTtl,
      refreshToken: await find(ctx, 'RefreshToken', rtValue), refreshTokenExpiresIn: grantExpiresIn,
    });
    Object.assign(t.first, { accessToken: atValue, refreshToken: rtValue });
  }
  if (o.code) {
    const code = new provider.AuthorizationCode({
      accountId, clientId: o.clientId, authTime: epoch(at), codeChallenge: o.code.codeChallenge, codeChallengeMethod: 'S256', grantId,
      redirectUri: o.code.redirectUri, resource: ctx.resourceIndicator, scope: license.url, sessionUid, expiresIn: o.code.ttl,
    } as unknown as ConstructorParameters<Provider['AuthorizationCode']>[0]);
    const codeValue = await code.save();
    Object.assign(t, { code: await find(ctx, 'AuthorizationCode', codeValue), codeExpiresIn: o.code.ttl });
    t.first.code = codeValue;
  }
  return t;
}

/** A record like the template's for a new SME: same times, new ids, account and meter. */
function cloneRecord(ctx: SeedContext, t: Template, clientId: string): { row: PermissionRow; accessToken?: string; refreshToken?: string; code?: string } {
  const sme = newSme(ctx, t.at);
  const accountId = accountIdFor(ctx, sme.orgId, clientId);
  const grantId = tokenValue();
  const ids = { accountId, grantId };
  const oidc: OidcRow[] = [{ model: 'Grant', id: grantId, payload: { ...t.grant, jti: grantId, accountId }, expiresIn: t.grantExpiresIn }];
  const row: PermissionRow = {
    sme, clientId, accountId, permissionId: prefixedId('perm'), evidenceId: random(24).toString('base64url'), license: ctx.license, grantId,
    at: t.at, expires: t.expires, dataAvailableFrom: t.dataAvailableFrom, userId: 'seed', oidc,
  };
  const out: { row: PermissionRow; accessToken?: string; refreshToken?: string; code?: string } = { row };
  if (t.refreshToken) {
    const value = tokenValue();
    const payload = { ...t.refreshToken, ...ids, jti: value };
    oidc.push({ model: 'RefreshToken', id: value, payload, expiresIn: t.refreshTokenExpiresIn });
    row.refreshLink = {
      tokenHash: hashIdentifier(value), sealed: ctx.seal.seal(value),
      issuedAt: new Date(Number(payload.iat ?? 0) * 1000), expiresAt: new Date(Number(payload.exp ?? 0) * 1000),
    };
    out.refreshToken = value;
  }
  if (t.accessToken) {
    const value = tokenValue();
    const extra = t.accessToken.extra as Record<string, unknown> & { meters: Array<Record<string, unknown>> };
    const payload = {
      ...t.accessToken, ...ids, jti: value,
      extra: { ...extra, account: accountId, meters: extra.meters.map((m) => ({ ...m, id: sme.meterIdentifier })) },
    };
    oidc.push({ model: 'AccessToken', id: value, payload, expiresIn: t.accessTokenExpiresIn });
    const exp = new Date(Number(payload.exp ?? 0) * 1000);
    row.token = { issuedAt: new Date(Number(payload.iat ?? 0) * 1000), expires: exp < t.expires ? exp : t.expires };
    out.accessToken = value;
  }
  if (t.code) {
    const value = tokenValue();
    oidc.push({ model: 'AuthorizationCode', id: value, payload: { ...t.code, ...ids, jti: value }, expiresIn: t.codeExpiresIn });
    out.code = value;
  }
  return out;
}

// --- checks: read a sample back through the real stores ------------------------------------------

async function checkRecord(ctx: SeedContext, r: { grantId: string; accessToken?: string; refreshToken?: string; code?: string }): Promise<void> {
  const { domain } = ctx;
  const fail = (what: string) => { throw new Error(`seed check failed: ${what} (grant ${r.grantId.slice(0, 8)}…)`); };
  const permission = await domain.permissionStore.byGrantId(r.grantId);
  if (!permission || permission.grantId !== r.grantId || permissionStatus(permission, new Date()) !== 'active') fail('no active permission for the grant');
  if (!(await domain.smeAccounts.resolveAccount(permission!.account))) fail('the account does not resolve');
  const meters = await domain.smeAccounts.meters(permission!.organisationId);
  if (meters.length !== 1 || meters[0].id !== permission!.meters[0]) fail('the meter is not the organisation\'s');
  const grant = await domain.oidcStore.adapterFor('Grant').find(r.grantId);
  if (!grant || grant.accountId !== permission!.account) fail('the Grant is missing or for another account');
  if (r.accessToken) {
    const at = await domain.oidcStore.adapterFor('AccessToken').find(r.accessToken);
    if (!at || at.grantId !== r.grantId || (at.extra as { account?: string }).account !== permission!.account) fail('the access token does not read back');
  }
  if (r.refreshToken) {
    const rt = await domain.oidcStore.adapterFor('RefreshToken').find(r.refreshToken);
    const link = await domain.permissionStore.refreshTokenLink(hashIdentifier(r.refreshToken));
    if (!rt || rt.grantId !== r.grantId || !link || link.grantId !== r.grantId || ctx.seal.open(link.sealedToken) !== r.refreshToken) fail('the refresh token or its link does not read back');
  }
  if (r.code) {
    const code = await domain.oidcStore.adapterFor('AuthorizationCode').find(r.code);
    if (!code || code.grantId !== r.grantId || code.consumed) fail('the authorization code does not read back');
  }
}

// --- commands --------------------------------------------------------------------------------------

function options<T extends ParseArgsOptionsConfig>(args: string[], spec: T) {
  try {
    return parseArgs({ args, strict: true, options: spec, allowPositionals: false }).values;
  } catch (err) {
    throw new SeedUsageError((err as Error).message);
  }
}

function positiveInteger(value: string | undefined, name: string, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new SeedUsageError(`--${name} is required`);
    return fallback;
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new SeedUsageError(`--${name} must be a whole number of at least 1`);
  return n;
}

/** Keeps a uniform sample of `size` items of a stream of unknown length (reservoir sampling). */
class Reservoir<T> {
  readonly items: T[] = [];
  #seen = 0;
  readonly #size: number;
  constructor(size: number) {
    this.#size = size;
  }
  add(item: T): void {
    this.#seen += 1;
    if (this.items.length < this.#size) this.items.push(item);
    else {
      const j = Math.floor(Math.random() * this.#seen);
      if (j < this.#size) this.items[j] = item;
    }
  }
}

function progress(log: (line: string) => void, label: string, done: number, total: number, started: number, last: { at: number }): void {
  const now = performance.now();
  if (now - last.at < 5000 && done < total) return;
  last.at = now;
  const seconds = (now - started) / 1000;
  log(`seed ${label}: ${done}/${total} in ${seconds.toFixed(1)} s (${Math.round(done / Math.max(seconds, 0.001))}/s)`);
}

async function seedSmes(ctx: SeedContext, values: Record<string, string | boolean | undefined>, log: (line: string) => void): Promise<Omit<SeedReport, 'storage'>> {
  const count = positiveInteger(values.count as string | undefined, 'count');
  const password = values.password as string | undefined;
  if (!password || password.length < 10) throw new SeedUsageError('seed smes needs --password (at least 10 characters)');
  const started = performance.now();
  const passwordHash = await hashPassword(password); // one real scrypt hash, shared by every seeded user
  const createdAt = new Date();
  const batch = 5000;
  const last = { at: started };
  for (let i = 0; i < count; i += batch) {
    const rows: SmeRow[] = [];
    for (let j = i; j < Math.min(count, i + batch); j += 1) rows.push(newSme(ctx, createdAt, { email: smeEmail(ctx.prefix, j), passwordHash }));
    await ctx.writer.smes(rows);
    progress(log, 'smes', Math.min(count, i + batch), count, started, last);
  }
  const user = await ctx.domain.smeAccounts.authenticate(smeEmail(ctx.prefix, count - 1), password);
  if (!user) throw new Error('seed check failed: a seeded SME cannot sign in');
  const seconds = (performance.now() - started) / 1000;
  return { command: 'smes', requested: count, seeded: count, seconds, perSecond: count / seconds, capped: false };
}

/** The sign-in email of the i-th SME `seed smes --prefix <prefix>` made (0-based). */
export function smeEmail(prefix: string, i: number): string {
  return `${prefix.toLowerCase().replace(/[^a-z0-9-]+/g, '-')}-${i}@sme.bench.example`;
}

type Sampled = { grantId: string; accessToken?: string; refreshToken?: string; code?: string };

async function seedRecords(
  ctx: SeedContext, kind: 'permissions' | 'codes', values: Record<string, string | boolean | undefined>, log: (line: string) => void,
): Promise<Omit<SeedReport, 'storage'>> {
  const count = positiveInteger(values.count as string | undefined, 'count');
  const clientId = values.client as string | undefined;
  if (!clientId || URL.parse(clientId)?.protocol !== 'https:') throw new SeedUsageError(`seed ${kind} needs --client <https application URL>`);
  const batchSize = positiveInteger(values.batch as string | undefined, 'batch', ctx.config.storage === 'mongo' ? 1000 : 5000);
  const maxSeconds = values['max-seconds'] === undefined ? Infinity : positiveInteger(values['max-seconds'] as string, 'max-seconds');
  const out = values.out as string | undefined;
  const templateOptions: TemplateOptions = { clientId };
  let sampleSize = count;
  if (kind === 'permissions') {
    templateOptions.tokens = { accessTokenTtl: positiveInteger(values['access-token-ttl'] as string | undefined, 'access-token-ttl', ctx.config.accessTokenTtl) };
    if (values['client-cert']) templateOptions.clientCertPem = readFileSync(values['client-cert'] as string, 'utf8');
    sampleSize = positiveInteger(values.sample as string | undefined, 'sample', 20_000);
  } else {
    const redirectUri = values['redirect-uri'] as string | undefined;
    const codeChallenge = values['code-challenge'] as string | undefined;
    if (!redirectUri || URL.parse(redirectUri)?.protocol !== 'https:') throw new SeedUsageError('seed codes needs --redirect-uri <https URL>');
    if (!codeChallenge || !/^[\w-]{43}$/.test(codeChallenge)) throw new SeedUsageError('seed codes needs --code-challenge <base64url SHA-256 of the verifier>');
    if (!out) throw new SeedUsageError('seed codes needs --out <file> (the codes are only useful to whoever redeems them)');
    templateOptions.code = { redirectUri, codeChallenge, ttl: positiveInteger(values['code-ttl'] as string | undefined, 'code-ttl', 60) };
  }

  const started = performance.now();
  const template = await realRecord(ctx, templateOptions);
  const sample = new Reservoir<Sampled>(sampleSize);
  sample.add(template.first);
  let seeded = 1;
  let capped = false;
  const last = { at: started };
  // Read records back through the real stores: the template's and the first batch's right away
  // (the stores are small then: FerretDB v1 scans whole collections for most queries), a few
  // random ones at the end on SQLite.
  await checkRecord(ctx, template.first);
  let checkedBatch = false;
  while (seeded < count) {
    if ((performance.now() - started) / 1000 >= maxSeconds) {
      capped = true;
      break;
    }
    const rows: PermissionRow[] = [];
    const made: Sampled[] = [];
    for (let j = 0; j < Math.min(batchSize, count - seeded); j += 1) {
      const record = cloneRecord(ctx, template, clientId);
      rows.push(record.row);
      made.push({ grantId: record.row.grantId, accessToken: record.accessToken, refreshToken: record.refreshToken, code: record.code });
    }
    await ctx.writer.permissions(rows);
    made.forEach((m) => sample.add(m));
    if (!checkedBatch) {
      for (const m of [made[0], made[made.length - 1]]) await checkRecord(ctx, m);
      checkedBatch = true;
    }
    seeded += rows.length;
    progress(log, kind, seeded, count, started, last);
  }
  const seconds = (performance.now() - started) / 1000;
  if (ctx.config.storage === 'sqlite') {
    for (let i = 0; i < 3 && sample.items.length > 0; i += 1) await checkRecord(ctx, sample.items[Math.floor(Math.random() * sample.items.length)]);
  }

  if (out) {
    const lines = kind === 'codes'
      ? sample.items.map((r) => r.code).join('\n')
      : sample.items.map((r) => JSON.stringify({ accessToken: r.accessToken, refreshToken: r.refreshToken, grantId: r.grantId })).join('\n');
    writeFileSync(out, `${lines}\n`, { mode: 0o600 });
  }
  if (capped) log(`seed ${kind}: stopped after ${seeded} of ${count}: --max-seconds ${maxSeconds} reached`);
  return { command: kind, requested: count, seeded, seconds, perSecond: seeded / seconds, capped, out };
}

/** `seed <smes|permissions|codes> …`; argv starts with the sub-command. */
export async function runSeed(argv: string[], config: ServerConfig, log: (line: string) => void = console.log): Promise<SeedReport> {
  const [command, ...rest] = argv;
  if (!SEED_COMMANDS.includes(command as (typeof SEED_COMMANDS)[number])) throw new SeedUsageError(`unknown command "seed ${command ?? ''}"`);
  const values = options(rest, {
    count: { type: 'string' }, password: { type: 'string' }, prefix: { type: 'string' }, client: { type: 'string' }, 'client-cert': { type: 'string' },
    'access-token-ttl': { type: 'string' }, batch: { type: 'string' }, 'max-seconds': { type: 'string' }, out: { type: 'string' }, sample: { type: 'string' },
    'redirect-uri': { type: 'string' }, 'code-challenge': { type: 'string' }, 'code-ttl': { type: 'string' },
  });
  const ctx = await openContext(config, (values.prefix as string | undefined) ?? 'bench');
  try {
    const report = command === 'smes' ? await seedSmes(ctx, values, log) : await seedRecords(ctx, command as 'permissions' | 'codes', values, log);
    const full: SeedReport = { ...report, storage: config.storage };
    log(`seeded ${full.seeded} ${command} on ${config.storage} in ${full.seconds.toFixed(1)} s (${Math.round(full.perSecond)}/s)${full.capped ? ' (capped by --max-seconds)' : ''}`);
    return full;
  } finally {
    await ctx.close();
  }
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  // `--json`: the report as the last line of stdout (for the benchmark harness).
  const json = argv.includes('--json');
  runSeed(argv.filter((a) => a !== '--json'), loadConfig(), json ? (line) => console.error(line) : console.log).then((report) => {
    if (json) console.log(JSON.stringify(report));
    process.exit(0);
  }, (err: unknown) => {
    if (err instanceof SeedUsageError) {
      console.error(`${err.message}\nusage:\n${SEED_USAGE}`);
      process.exit(2);
    }
    console.error(err instanceof ConfigError ? `configuration error: ${err.message}` : `error: ${(err as Error)?.message ?? String(err)}`);
    process.exit(1);
  });
}

