/**
 * OidcStore on MongoDB (the driver, through a mongoose connection), for the durable models:
 * Grant, RefreshToken, ... (see PRODUCTION_ROUTING in routed-oidc-store.ts).
 *
 * Layout: one collection per model, `oidc_<Model>` (prefix configurable), each document
 *
 *   { _id: H(id), payload: '<JSON>', jtiRedacted, grantId, uid: H(uid), userCode: H(userCode),
 *     expiresAt: Date | null, consumedAt: Date | null, generation, updatedAt }
 *
 * - `_id` is hashIdentifier(id) (base64url SHA-256), a string, never an ObjectId; the id itself is
 *   never stored (payload rule: preparePayload). grantId is a reference and stays in clear.
 * - `payload` is the JSON text of the library's payload, so every key comes back exactly as given
 *   (BSON would reject or rewrite keys with '.' or '$', and JSON has no Date/ObjectId ambiguity).
 * - Per-model collections keep `_id` = H(id) unique per model; the same id in two models is two
 *   documents, as the contract asks.
 * - Expiry is enforced on read: entries are read by `_id` alone and `expiresAt` is compared
 *   here (see FERRETDB below for why not in the query). A TTL index on `expiresAt`
 *   (expireAfterSeconds = the purge grace) lets MongoDB delete expired documents; where the server
 *   cannot create TTL indexes (FerretDB v1), purgeExpired() does it.
 * - upsert first tries a plain insert (a new token or grant, the common case: one unique-index
 *   check); on a duplicate key it reads the entry, removes it when expired (consumption goes
 *   with it), and otherwise updates it in place keeping consumedAt.
 * - consume (MongoDB): a conditional `updateOne({ _id, consumedAt: null, <live> }, { $set: { consumedAt } })`:
 *   MongoDB applies single-document updates atomically (the filter is re-checked under the
 *   document's write lock), so of parallel consumes exactly one matches; the others get
 *   InvalidGrant.
 *
 * FerretDB v1 (the wire-compatible server of the test suite) is NOT atomic here: its update reads
 * the matching documents, then replaces them by _id without re-checking the filter, so several
 * parallel conditional updates "win" (2 to 37 of 50 in our runs). On FerretDB (detected by `buildInfo.ferretdbVersion`, or
 * `consumeMode: 'claim'`) consume first inserts a claim document `{ _id: '<Model>:<H(id)>:<generation>' }`
 * into `oidc_consume_claims` (after reading the entry by `_id` and checking expiry and
 * consumedAt in JS): the unique `_id` makes exactly one insert succeed (FerretDB's SQLite
 * backend enforces it with a unique index), and only that caller goes on to set consumedAt,
 * by `_id` alone. Other FerretDB v1 gaps: no TTL indexes (expireAfterSeconds is NotImplemented), no
 * partial indexes, no pipeline updates, no findAndModify projection, write concerns accepted but
 * meaningless (single node). None of them is used; neither are transactions.
 *
 * FERRETDB: what FerretDB v1.24 (SQLite backend) does with a query, measured (debug log of its
 * SQL, and timings on 1,000 to 100,000 documents):
 * - a filter that is exactly `{ _id: <string> }` becomes `WHERE _ferretdb_sjson->'$._id' = ?`, a
 *   scan inside SQLite (its unique index is on a differently written expression, so it is not
 *   used) that stops at the first match: about 1.5 us per document passed;
 * - any other filter (another field, `_id` plus a second condition, `$or`, `$in`, `$eq`), and
 *   every sort, reads and decodes the WHOLE collection in FerretDB, 5 to 15 us per document.
 *   Secondary indexes are created but no query ever uses them;
 * - updates and deletes select like a find, then rewrite by `_id` with a full-table UPDATE/DELETE
 *   scan (30 ms at 10,000 documents);
 * - inserts (and duplicate-key rejections) use the unique `_id` index: under 1 ms at any size.
 * So the hot paths here read by `_id` alone, decide in JS, and prefer inserts to updates. On
 * MongoDB every one of these is a single `_id` index operation.
 *
 * Writes use write concern `{ w: 'majority', wtimeoutMS: 5000 }` by default (a standalone
 * server treats it as w:1). Indexes are created by ensureIndexes() (the `db:init` command),
 * never at request time.
 * Connection-level failures reject with StoreUnavailableError('mongo'); the driver reconnects
 * by itself.
 */
import { randomUUID } from 'node:crypto';

import mongoose from 'mongoose';
import type { Connection, mongo } from 'mongoose';

import {
  expiresAtFor,
  grantAlreadyConsumed,
  grantNotFound,
  hashIdentifier,
  ModelAdapter,
  preparePayload,
  restorePayload,
} from './oidc-adapter-common.ts';
import { errorCode, MONGO_STORE_NAME, toStoreError } from './mongo-errors.ts';
import { OIDC_MODEL_NAMES } from './routed-oidc-store.ts';
import { StoreUnavailableError, storeUnreachable } from './types.ts';
import type { AdapterPayload, OidcAdapter, OidcStore } from './types.ts';

const STORE_NAME = MONGO_STORE_NAME;
const DEFAULT_PREFIX = 'oidc_';
const CLAIMS_SUFFIX = 'consume_claims';

/** How consume() makes "exactly one wins" hold. See the module comment. */
export type MongoConsumeMode = 'conditional-update' | 'claim';

export interface MongoOidcStoreOptions {
  /** Collection name prefix. Default `oidc_`. */
  collectionPrefix?: string;
  /** Models ensureIndexes() prepares by default. Default: every oidc-provider model. */
  models?: readonly string[];
  /** Default 'conditional-update' (MongoDB). 'claim' for servers whose updates are not atomic (FerretDB v1). */
  consumeMode?: MongoConsumeMode;
  /**
   * Write concern of every write. Default `{ w: 'majority', wtimeoutMS: 5000 }`: a write the
   * majority does not acknowledge in time rejects (StoreUnavailableError) instead of waiting.
   */
  writeConcern?: mongo.WriteConcernSettings;
  /** Seconds added to every expiresIn, like oidc-provider's clockTolerance. Default 0. */
  clockToleranceSeconds?: number;
  /** purgeExpired (and the TTL index) only delete documents expired at least this long ago. Default 5 minutes. */
  purgeGraceMs?: number;
  /** Whether close() closes the connection. Default true. */
  closeConnection?: boolean;
  /** Clock in epoch ms (tests). Default Date.now. */
  now?: () => number;
}

export interface MongoConnectOptions extends Omit<MongoOidcStoreOptions, 'consumeMode' | 'closeConnection'> {
  /** Database name when the URI names none. */
  dbName?: string;
  /**
   * Start-up gives up after this long; it is also the server selection timeout, i.e. how long an
   * operation waits for a server that went away before it rejects. Default 3000.
   */
  connectTimeoutMs?: number;
  /** An operation without an answer for this long fails (hung server). Default 10000. */
  socketTimeoutMs?: number;
  /** 'auto' (default): 'claim' when the server is FerretDB, else 'conditional-update'. */
  consumeMode?: MongoConsumeMode | 'auto';
}

/** What ensureIndexes() did. */
export interface MongoIndexReport {
  /** The collections indexed. */
  collections: string[];
  /** True when expiry is a TTL index; false when only purgeExpired() deletes expired documents. */
  ttlIndexes: boolean;
}

interface EntryDocument {
  _id: string;
  payload: string;
  jtiRedacted: boolean;
  grantId: string | null;
  uid: string | null;
  userCode: string | null;
  expiresAt: Date | null;
  consumedAt: Date | null;
  /** Random per insert: tells a re-created entry from the one a claim was made for. */
  generation: string;
  updatedAt: Date;
}

interface ClaimDocument {
  _id: string;
  expiresAt: Date | null;
  claimedAt: Date;
}

// --- errors ----------------------------------------------------------------------------------

const DUPLICATE_KEY = 11000;
const NOT_IMPLEMENTED = 238;
const INDEX_OPTIONS_CONFLICT = 85;

function unreachable(uri: string, cause: unknown): StoreUnavailableError {
  return storeUnreachable(STORE_NAME, uri, cause);
}

/** Collection names are `<prefix><Model>`: keep model names plain. */
function ensureModelName(modelName: string): void {
  if (typeof modelName !== 'string' || !/^[A-Za-z][A-Za-z0-9]*$/.test(modelName)) {
    throw new TypeError(`model name ${JSON.stringify(modelName)} cannot be stored in mongo (letters and digits only)`);
  }
}

/** Documents not expired at `now`. */
function live(now: number): mongo.Filter<EntryDocument> {
  return { $or: [{ expiresAt: null }, { expiresAt: { $gt: new Date(now) } }] };
}

/** Whether an entry read by `_id` is still live at `now` (the `live` filter, in JS). */
function isLive(doc: Pick<EntryDocument, 'expiresAt'>, now: number): boolean {
  return !(doc.expiresAt instanceof Date) || doc.expiresAt.getTime() > now;
}

const READ_PROJECTION = { projection: { payload: 1, jtiRedacted: 1, consumedAt: 1, expiresAt: 1 } } as const;

function toPayload(doc: Pick<EntryDocument, 'payload' | 'jtiRedacted' | 'consumedAt'>, id: string | undefined): AdapterPayload {
  return restorePayload(
    JSON.parse(doc.payload) as AdapterPayload,
    id,
    doc.jtiRedacted === true,
    doc.consumedAt instanceof Date ? doc.consumedAt.getTime() : null,
  );
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  promise.catch(() => undefined); // raced below; a late rejection must not go unhandled
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The MongoDB OidcStore. Build it with MongoOidcStore.connect(uri), or from an open mongoose
 * connection (then pass the consumeMode that fits the server).
 */
export class MongoOidcStore implements OidcStore {
  readonly name = STORE_NAME;
  readonly consumeMode: MongoConsumeMode;

  readonly #connection: Connection;
  readonly #prefix: string;
  readonly #models: readonly string[];
  readonly #writeConcern: mongo.WriteConcernSettings;
  readonly #clockToleranceSeconds: number;
  readonly #purgeGraceMs: number;
  readonly #closeConnection: boolean;
  readonly #now: () => number;
  readonly #adapters = new Map<string, OidcAdapter>();
  readonly #collections = new Map<string, mongo.Collection<EntryDocument>>();
  #closed = false;

  constructor(connection: Connection, options: MongoOidcStoreOptions = {}) {
    this.#connection = connection;
    this.#prefix = options.collectionPrefix ?? DEFAULT_PREFIX;
    this.#models = options.models ?? OIDC_MODEL_NAMES;
    this.consumeMode = options.consumeMode ?? 'conditional-update';
    this.#writeConcern = options.writeConcern ?? { w: 'majority', wtimeoutMS: 5000 };
    this.#clockToleranceSeconds = options.clockToleranceSeconds ?? 0;
    this.#purgeGraceMs = options.purgeGraceMs ?? 5 * 60 * 1000;
    this.#closeConnection = options.closeConnection ?? true;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Connect to `uri` and wait until the server answers. Rejects within about connectTimeoutMs
   * with a one-line StoreUnavailableError (`mongo at mongodb://host:port/db is unreachable: ...`);
   * it never hangs and leaves no connection behind.
   */
  static async connect(uri: string, options: MongoConnectOptions = {}): Promise<MongoOidcStore> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 3000;
    let connection: Connection;
    try {
      connection = mongoose.createConnection(uri, {
        dbName: options.dbName,
        serverSelectionTimeoutMS: connectTimeoutMs,
        connectTimeoutMS: connectTimeoutMs,
        socketTimeoutMS: options.socketTimeoutMs ?? 10_000,
        // No mongoose buffering: an operation while disconnected fails instead of waiting.
        bufferCommands: false,
        autoIndex: false,
        autoCreate: false,
      });
    } catch (error) {
      throw unreachable(uri, error);
    }
    connection.on('error', () => undefined); // reported through the rejection below

    let consumeMode: MongoConsumeMode;
    try {
      consumeMode = await withTimeout(
        (async (): Promise<MongoConsumeMode> => {
          await connection.asPromise();
          const db = connection.db;
          if (db === undefined) throw new Error('no database');
          await db.command({ ping: 1 });
          if (options.consumeMode !== undefined && options.consumeMode !== 'auto') return options.consumeMode;
          const info = await db.admin().command({ buildInfo: 1 });
          return typeof info.ferretdbVersion === 'string' ? 'claim' : 'conditional-update';
        })(),
        connectTimeoutMs + 1000,
      );
    } catch (error) {
      await withTimeout(connection.close(true), 1000).catch(() => undefined);
      throw unreachable(uri, error);
    }
    return new MongoOidcStore(connection, { ...options, consumeMode, closeConnection: true });
  }

  /** The underlying mongoose connection (tests, db:init). */
  get connection(): Connection {
    return this.#connection;
  }

  adapterFor(modelName: string): OidcAdapter {
    let adapter = this.#adapters.get(modelName);
    if (adapter === undefined) {
      ensureModelName(modelName);
      adapter = new ModelAdapter(this, modelName);
      this.#adapters.set(modelName, adapter);
    }
    return adapter;
  }

  /** The collection holding `model`. */
  collectionName(model: string): string {
    return `${this.#prefix}${model}`;
  }

  async ping(): Promise<void> {
    await this.#run(async (db) => {
      await db.command({ ping: 1 });
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#closeConnection) {
      await this.#connection.close();
    }
  }

  /**
   * Create the indexes of `models` (default: the store's models) and of the claims collection:
   * grantId, uid, userCode, and expiresAt (TTL where the server supports it). Idempotent. Run by
   * `db:init`, never at request time.
   */
  async ensureIndexes(models: readonly string[] = this.#models): Promise<MongoIndexReport> {
    models.forEach(ensureModelName);
    const expireAfterSeconds = Math.ceil(this.#purgeGraceMs / 1000);
    return this.#run(async (db) => {
      let ttlIndexes = true;
      const collections: string[] = [];
      const names = [...models.map((model) => this.collectionName(model)), `${this.#prefix}${CLAIMS_SUFFIX}`];
      for (const name of names) {
        const collection = db.collection(name, { writeConcern: this.#writeConcern });
        if (!name.endsWith(CLAIMS_SUFFIX)) {
          await collection.createIndex({ grantId: 1 }, { name: 'grantId' });
          await collection.createIndex({ uid: 1 }, { name: 'uid' });
          await collection.createIndex({ userCode: 1 }, { name: 'userCode' });
        }
        try {
          await collection.createIndex({ expiresAt: 1 }, { name: 'expiresAt_ttl', expireAfterSeconds });
        } catch (error) {
          if (errorCode(error) === INDEX_OPTIONS_CONFLICT) {
            // The grace changed since the index was made: update it in place.
            await db.command({ collMod: name, index: { name: 'expiresAt_ttl', expireAfterSeconds } });
          } else if (errorCode(error) === NOT_IMPLEMENTED) {
            // FerretDB v1: no TTL indexes. Index the field for purgeExpired() instead.
            ttlIndexes = false;
            await collection.createIndex({ expiresAt: 1 }, { name: 'expiresAt' });
          } else {
            throw error;
          }
        }
        collections.push(name);
      }
      return { collections, ttlIndexes };
    });
  }

  /**
   * Delete documents that expired more than purgeGraceMs before `now`, in every collection of
   * this store (by prefix). With TTL indexes MongoDB does it too; running both is harmless.
   */
  async purgeExpired(now: Date = new Date(this.#now())): Promise<number> {
    const cutoff = new Date(now.getTime() - this.#purgeGraceMs);
    return this.#run(async (db) => {
      const listed = await db.listCollections({}, { nameOnly: true }).toArray();
      let deleted = 0;
      for (const { name } of listed) {
        if (!name.startsWith(this.#prefix)) continue;
        const result = await db
          .collection(name, { writeConcern: this.#writeConcern })
          .deleteMany({ $and: [{ expiresAt: { $ne: null } }, { expiresAt: { $lte: cutoff } }] });
        deleted += result.deletedCount;
      }
      return deleted;
    });
  }

  // --- operations used by MongoOidcAdapter ---

  async upsert(model: string, id: string, payload: AdapterPayload, expiresIn: number | undefined): Promise<void> {
    const now = this.#now();
    const prepared = preparePayload(id, payload, now);
    const expiresAtMs = expiresAtFor(expiresIn, now, this.#clockToleranceSeconds);
    const key = hashIdentifier(id);
    const consumedAt = prepared.consumedAtMs === null ? null : new Date(prepared.consumedAtMs);
    const expiresAt = expiresAtMs === null ? null : new Date(expiresAtMs);
    const fields = {
      payload: JSON.stringify(prepared.body),
      jtiRedacted: prepared.jtiRedacted,
      grantId: prepared.grantId,
      uid: prepared.uidHash,
      userCode: prepared.userCodeHash,
      expiresAt,
      updatedAt: new Date(now),
    };
    const update: mongo.UpdateFilter<EntryDocument> = {
      $set: fields,
      // Consumption is one-way: an update of a live entry keeps its consumedAt.
      $setOnInsert: { consumedAt, generation: randomUUID() },
    };
    await this.#runOn(model, async (collection) => {
      for (let attempt = 0; ; attempt += 1) {
        // Most upserts create the entry (a new token or grant): one insert, which both servers
        // check against the unique `_id` index without reading the collection.
        try {
          await collection.insertOne({ _id: key, ...fields, consumedAt, generation: randomUUID() });
          return;
        } catch (error) {
          if (errorCode(error) !== DUPLICATE_KEY) throw error;
        }
        const existing = await collection.findOne({ _id: key }, { projection: { expiresAt: 1, consumedAt: 1 } });
        if (existing !== null && !isLive(existing, now) && attempt < 3) {
          // An entry that already expired is gone, consumption included: start afresh. (The
          // filter makes it exact on MongoDB; it only runs for an expired entry.)
          await collection.deleteOne({ _id: key, expiresAt: { $lte: new Date(now) } });
          continue;
        }
        // A live entry (or one that was just created by a racing upsert): update it in place.
        await collection.updateOne({ _id: key }, update, { upsert: true });
        if (consumedAt !== null && !existing?.consumedAt) {
          await collection.updateOne({ _id: key, consumedAt: null }, { $set: { consumedAt } });
        }
        return;
      }
    });
  }

  async find(model: string, id: string): Promise<AdapterPayload | undefined> {
    // By `_id` alone, expiry checked here: the only filter FerretDB v1 hands to SQLite (see
    // FERRETDB in the module comment); on MongoDB it is the same single index lookup.
    const doc = await this.#runOn(model, (collection) => collection.findOne({ _id: hashIdentifier(id) }, READ_PROJECTION));
    return doc === null || !isLive(doc, this.#now()) ? undefined : toPayload(doc, id);
  }

  async findByIndex(model: string, field: 'uid' | 'userCode', value: string): Promise<AdapterPayload | undefined> {
    const doc = await this.#runOn(model, (collection) =>
      collection.findOne(
        { [field]: hashIdentifier(value), ...live(this.#now()) },
        { ...READ_PROJECTION, sort: { updatedAt: -1 } },
      ),
    );
    return doc === null ? undefined : toPayload(doc, undefined);
  }

  async consume(model: string, id: string): Promise<void> {
    const key = hashIdentifier(id);
    const now = this.#now();
    await this.#runOn(model, async (collection, db) => {
      if (this.consumeMode === 'claim') {
        // Read by `_id` alone (FerretDB scans in SQLite), decide here, then let the unique
        // claim `_id` pick the one winner.
        const entry = await collection.findOne({ _id: key }, { projection: { consumedAt: 1, expiresAt: 1, generation: 1 } });
        if (entry === null || !isLive(entry, now)) throw grantNotFound();
        if (entry.consumedAt) throw grantAlreadyConsumed();
        try {
          await db
            .collection<ClaimDocument>(`${this.#prefix}${CLAIMS_SUFFIX}`, { writeConcern: this.#writeConcern })
            .insertOne({ _id: `${model}:${key}:${entry.generation}`, expiresAt: entry.expiresAt, claimedAt: new Date(now) });
        } catch (error) {
          if (errorCode(error) === DUPLICATE_KEY) throw grantAlreadyConsumed();
          throw error;
        }
        // The claim decided; the entry only records it. By `_id` alone again: a filter with more
        // fields makes FerretDB read and decode the whole collection.
        const result = await collection.updateOne({ _id: key }, { $set: { consumedAt: new Date(now) } });
        if (result.matchedCount === 1) return;
        throw grantNotFound(); // destroyed in between
      }
      // MongoDB: the conditional update is atomic (the filter is re-checked under the
      // document's write lock) and still one `_id` index lookup.
      const result = await collection.updateOne(
        { _id: key, consumedAt: null, ...live(now) },
        { $set: { consumedAt: new Date(now) } },
      );
      if (result.matchedCount === 1) return;
      // Nothing matched: tell "consumed by someone else" from "nothing to consume". Both are
      // invalid_grant (a 400); the second read only picks the message.
      const state = await collection.findOne({ _id: key }, { projection: { expiresAt: 1 } });
      throw state === null || !isLive(state, now) ? grantNotFound() : grantAlreadyConsumed();
    });
  }

  async destroy(model: string, id: string): Promise<void> {
    await this.#runOn(model, (collection) => collection.deleteOne({ _id: hashIdentifier(id) }));
  }

  async revokeByGrantId(model: string, grantId: string): Promise<void> {
    await this.#runOn(model, (collection) => collection.deleteMany({ grantId }));
  }

  #collection(db: mongo.Db, model: string): mongo.Collection<EntryDocument> {
    let collection = this.#collections.get(model);
    if (collection === undefined) {
      collection = db.collection<EntryDocument>(this.collectionName(model), { writeConcern: this.#writeConcern });
      this.#collections.set(model, collection);
    }
    return collection;
  }

  async #runOn<T>(model: string, operation: (collection: mongo.Collection<EntryDocument>, db: mongo.Db) => Promise<T>): Promise<T> {
    return this.#run((db) => operation(this.#collection(db, model), db));
  }

  async #run<T>(operation: (db: mongo.Db) => Promise<T>): Promise<T> {
    const db = this.#connection.db;
    if (this.#closed || db === undefined) {
      throw new StoreUnavailableError(STORE_NAME, { cause: new Error(this.#closed ? 'store is closed' : 'not connected') });
    }
    try {
      return await operation(db);
    } catch (error) {
      throw toStoreError(error);
    }
  }
}

