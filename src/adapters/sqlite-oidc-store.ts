import type { DatabaseSync, SQLOutputValue, StatementSync } from 'node:sqlite';

import {
  expiresAtFor,
  grantAlreadyConsumed,
  grantNotFound,
  hashIdentifier,
  ModelAdapter,
  type ModelOperations,
  preparePayload,
  restorePayload,
} from './oidc-adapter-common.ts';
import { migrate } from './sqlite-database.ts';
import { GroupCommit } from './sqlite-group-commit.ts';
import { StoreUnavailableError } from './types.ts';
import type { AdapterPayload, OidcAdapter, OidcStore, TokenWithGrant } from './types.ts';

export { oidcAdapterFactory } from './oidc-adapter-common.ts';
export type { OidcAdapterConstructor } from './oidc-adapter-common.ts';

/**
 * Every oidc-provider model in one table.
 *
 * - key: base64url(SHA-256(id)); the id itself is never stored (see preparePayload for the jti
 *   rule). uid and user_code hold hashes as well; grant_id is a reference and stays in clear.
 * - expires_at / consumed_at: epoch ms; NULL means never expires / not consumed.
 * - jti_redacted: 1 when the payload's jti (= the id) was removed, so find(id) puts it back.
 */
const SCHEMA = `
CREATE TABLE oidc_model (
  model        TEXT    NOT NULL,
  key          TEXT    NOT NULL,
  payload      TEXT    NOT NULL,
  grant_id     TEXT,
  uid          TEXT,
  user_code    TEXT,
  expires_at   INTEGER,
  consumed_at  INTEGER,
  jti_redacted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (model, key)
);
CREATE INDEX oidc_model_grant_id ON oidc_model (model, grant_id);
CREATE INDEX oidc_model_uid ON oidc_model (model, uid);
CREATE INDEX oidc_model_user_code ON oidc_model (model, user_code);
CREATE INDEX oidc_model_expires_at ON oidc_model (expires_at);
`;

/**
 * Only sessions and interactions have a uid, only device codes a user code, and sessions and
 * interactions no grant: indexing just the rows that have the value spares every token insert
 * index pages it never uses (a code exchange wrote ~22 WAL pages, ~4 of them for these; each
 * page is a write in the commit). `uid = ?` implies `uid IS NOT NULL`, so look-ups still use them.
 */
const PARTIAL_INDEXES = `
DROP INDEX oidc_model_grant_id;
DROP INDEX oidc_model_uid;
DROP INDEX oidc_model_user_code;
CREATE INDEX oidc_model_grant_id ON oidc_model (model, grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX oidc_model_uid ON oidc_model (model, uid) WHERE uid IS NOT NULL;
CREATE INDEX oidc_model_user_code ON oidc_model (model, user_code) WHERE user_code IS NOT NULL;
`;

const LIVE = '(expires_at IS NULL OR expires_at > :now)';
/** LIVE for the look-ups, which bind now as ?3; `alias` names the table in a join. */
const livePositional = (alias = '') => `(${alias}expires_at IS NULL OR ${alias}expires_at > ?3)`;
const LIVE_POSITIONAL = livePositional();
/** The SQL name of hashIdentifier on a connection this store uses. */
const ID_HASH_FUNCTION = 'perseus_id_hash';
/** The model whose adapter offers findWithGrant: the tokens introspection reads itself. */
const TOKEN_WITH_GRANT = 'AccessToken';

export interface SqliteOidcStoreOptions {
  /** Seconds added to every expiresIn, like oidc-provider's clockTolerance. Default 0. */
  clockToleranceSeconds?: number;
  /** purgeExpired only deletes rows expired at least this long ago. Default 5 minutes. */
  purgeGraceMs?: number;
  /**
   * Whether close() also closes the DatabaseSync. Default true; pass false when the handle is
   * shared (e.g. with the permission domain) and its owner closes it.
   */
  closeDatabase?: boolean;
  /** Clock in epoch ms (tests). Default Date.now. */
  now?: () => number;
}

interface Statements {
  upsert: StatementSync;
  find: StatementSync;
  findWithGrant: StatementSync;
  findByUid: StatementSync;
  findByUserCode: StatementSync;
  consume: StatementSync;
  consumeState: StatementSync;
  destroy: StatementSync;
  revokeByGrantId: StatementSync;
  purge: StatementSync;
  ping: StatementSync;
}

function integerOrNull(value: SQLOutputValue | undefined): number | null {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  return null;
}

/**
 * The payload of a found row, as the library saved it. The look-up statements return arrays
 * (payload, jti_redacted, consumed_at): no object per row on the hot path.
 */
function payloadOf(row: unknown, id: string | undefined): AdapterPayload | undefined {
  return payloadAt(row as SQLOutputValue[] | undefined, 0, id);
}

/** payloadOf for the three columns starting at `offset` (findWithGrant reads two rows' worth). */
function payloadAt(values: SQLOutputValue[] | undefined, offset: number, id: string | undefined): AdapterPayload | undefined {
  if (values === undefined || typeof values[offset] !== 'string') return undefined;
  return restorePayload(JSON.parse(values[offset] as string) as AdapterPayload, id, integerOrNull(values[offset + 1]) === 1, integerOrNull(values[offset + 2]));
}

/** A token model's adapter: the library's operations, and findWithGrant for introspection. */
class SqliteTokenAdapter extends ModelAdapter {
  readonly #findWithGrant: (id: string) => TokenWithGrant | undefined;

  constructor(ops: ModelOperations, model: string, findWithGrant: (id: string) => TokenWithGrant | undefined) {
    super(ops, model);
    this.#findWithGrant = findWithGrant;
  }

  async findWithGrant(id: string): Promise<TokenWithGrant | undefined> {
    return typeof id === 'string' ? this.#findWithGrant(id) : undefined;
  }
}

/**
 * OidcStore on node:sqlite. All calls are synchronous SQLite statements (prepared once per
 * store) behind async methods; SQLite's own locking makes each statement atomic across
 * connections and processes sharing the file.
 */
export class SqliteOidcStore implements OidcStore {
  readonly name = 'sqlite';

  readonly #db: DatabaseSync;
  readonly #statements: Statements;
  readonly #adapters = new Map<string, OidcAdapter>();
  readonly #clockToleranceSeconds: number;
  readonly #purgeGraceMs: number;
  readonly #closeDatabase: boolean;
  readonly #now: () => number;
  readonly #group: GroupCommit;

  constructor(db: DatabaseSync, options: SqliteOidcStoreOptions = {}) {
    this.#db = db;
    this.#group = new GroupCommit(db, { closedError: () => new StoreUnavailableError(this.name, { cause: new Error('database is closed') }) });
    this.#clockToleranceSeconds = options.clockToleranceSeconds ?? 0;
    this.#purgeGraceMs = options.purgeGraceMs ?? 5 * 60 * 1000;
    this.#closeDatabase = options.closeDatabase ?? true;
    this.#now = options.now ?? Date.now;

    migrate(db, 'oidc_model/001_create', SCHEMA);
    migrate(db, 'oidc_model/002_partial_indexes', PARTIAL_INDEXES);

    // hashIdentifier in SQL, for findWithGrant (deterministic: same input, same key).
    db.function(ID_HASH_FUNCTION, { deterministic: true }, (value) => (typeof value === 'string' ? hashIdentifier(value) : null));
    const columns = 'payload, jti_redacted, consumed_at';
    const lookup = (sql: string) => {
      const statement = db.prepare(sql);
      statement.setReturnArrays(true);
      return statement;
    };
    this.#statements = {
      upsert: db.prepare(`
        INSERT INTO oidc_model (model, key, payload, grant_id, uid, user_code, expires_at, consumed_at, jti_redacted)
        VALUES (:model, :key, :payload, :grantId, :uid, :userCode, :expiresAt, :consumedAt, :jtiRedacted)
        ON CONFLICT (model, key) DO UPDATE SET
          payload = excluded.payload,
          grant_id = excluded.grant_id,
          uid = excluded.uid,
          user_code = excluded.user_code,
          expires_at = excluded.expires_at,
          jti_redacted = excluded.jti_redacted,
          -- consumption is one-way: re-saving a consumed entry keeps it consumed (unless the old
          -- row had expired, i.e. it was logically gone)
          consumed_at = CASE
            WHEN oidc_model.expires_at IS NOT NULL AND oidc_model.expires_at <= :now THEN excluded.consumed_at
            ELSE COALESCE(oidc_model.consumed_at, excluded.consumed_at)
          END`),
      // Look-ups bind by position (?1 model, ?2 key, ?3 now) and return arrays: both measurably
      // cheaper in node:sqlite than named parameters and row objects (find 4.8 → 3.6 µs).
      find: lookup(`SELECT ${columns} FROM oidc_model WHERE model = ?1 AND key = ?2 AND ${LIVE_POSITIONAL}`),
      // A token and the Grant it names, as find(id) and find(grantId) would read them, in one
      // read transaction: that transaction (locks on the -shm file) is most of a look-up's cost
      // here (bench/). The grant's key is derived from the token row's grant_id in SQL.
      findWithGrant: lookup(`SELECT t.payload, t.jti_redacted, t.consumed_at, g.payload, g.jti_redacted, g.consumed_at, t.grant_id
        FROM oidc_model t LEFT JOIN oidc_model g
          ON g.model = 'Grant' AND g.key = ${ID_HASH_FUNCTION}(t.grant_id) AND ${livePositional('g.')}
        WHERE t.model = ?1 AND t.key = ?2 AND ${livePositional('t.')}`),
      // Newest first should two live rows ever share a uid / user code.
      findByUid: lookup(`SELECT ${columns} FROM oidc_model
        WHERE model = ?1 AND uid = ?2 AND ${LIVE_POSITIONAL} ORDER BY rowid DESC LIMIT 1`),
      findByUserCode: lookup(`SELECT ${columns} FROM oidc_model
        WHERE model = ?1 AND user_code = ?2 AND ${LIVE_POSITIONAL} ORDER BY rowid DESC LIMIT 1`),
      // The whole consume: one conditional write, so exactly one of concurrent callers changes the row.
      consume: db.prepare(`UPDATE oidc_model SET consumed_at = :now
        WHERE model = :model AND key = :key AND consumed_at IS NULL AND ${LIVE}`),
      consumeState: db.prepare(`SELECT consumed_at FROM oidc_model WHERE model = :model AND key = :key AND ${LIVE}`),
      destroy: db.prepare('DELETE FROM oidc_model WHERE model = :model AND key = :key'),
      revokeByGrantId: db.prepare('DELETE FROM oidc_model WHERE model = :model AND grant_id = :grantId'),
      purge: db.prepare('DELETE FROM oidc_model WHERE expires_at IS NOT NULL AND expires_at <= :cutoff'),
      ping: db.prepare('SELECT 1 AS ok'),
    };
  }

  /** The connection this store writes on (others on it can share its transactions). */
  get database(): DatabaseSync {
    return this.#db;
  }

  /**
   * Runs `work` (synchronous writes on this connection) in the next group commit and resolves
   * once it is committed (sqlite-group-commit.ts). `work` must capture its values now.
   */
  inNextCommit<T>(work: () => T): Promise<T> {
    return this.#group.run(work);
  }

  /**
   * The per-model operations, for ModelAdapter (node:sqlite is synchronous underneath). Reads run
   * at once; the library's writes (save, consume, destroy) go through the group commit and
   * resolve once on disk. revokeByGrantId (withdrawals) stays immediate.
   */
  readonly #operations: ModelOperations = {
    upsert: (model, id, payload, expiresIn) => this.#group.run(this.prepareUpsert(model, id, payload, expiresIn)),
    find: (model, id) => this.findSync(model, id),
    findByIndex: (model, field, value) => (field === 'uid' ? this.findByUidSync(model, value) : this.findByUserCodeSync(model, value)),
    consume: (model, id) => this.#group.run(() => this.consumeSync(model, id)),
    destroy: (model, id) => this.#group.run(() => this.destroySync(model, id)),
    revokeByGrantId: (model, grantId) => this.revokeByGrantIdSync(model, grantId),
  };

  adapterFor(modelName: string): OidcAdapter {
    if (typeof modelName !== 'string' || modelName === '') {
      throw new TypeError('model name must be a non-empty string');
    }
    let adapter = this.#adapters.get(modelName);
    if (adapter === undefined) {
      adapter = modelName === TOKEN_WITH_GRANT
        ? new SqliteTokenAdapter(this.#operations, modelName, (id) => this.findWithGrantSync(modelName, id))
        : new ModelAdapter(this.#operations, modelName);
      this.#adapters.set(modelName, adapter);
    }
    return adapter;
  }

  async ping(): Promise<void> {
    try {
      this.#open().ping.get();
    } catch (error) {
      throw error instanceof StoreUnavailableError ? error : new StoreUnavailableError(this.name, { cause: error });
    }
  }

  async close(): Promise<void> {
    // Writes waiting for their group are committed (or fail) before the connection goes.
    this.#group.flush();
    if (this.#closeDatabase && this.#db.isOpen) {
      this.#db.close();
    }
  }

  async purgeExpired(now: Date = new Date(this.#now())): Promise<number> {
    const result = this.#open().purge.run({ cutoff: now.getTime() - this.#purgeGraceMs });
    return Number(result.changes);
  }

  // --- operations used by SqliteOidcAdapter (synchronous; the adapter makes them async) ---

  /**
   * The upsert of `payload` as it is now (serialised, with now's time), to run later: in a group
   * commit, or in a caller's transaction (TokenRecordingStore).
   */
  prepareUpsert(model: string, id: string, payload: AdapterPayload, expiresIn: number | undefined): () => void {
    const now = this.#now();
    const prepared = preparePayload(id, payload, now);
    const values = {
      model,
      key: hashIdentifier(id),
      payload: JSON.stringify(prepared.body),
      grantId: prepared.grantId,
      uid: prepared.uidHash,
      userCode: prepared.userCodeHash,
      expiresAt: expiresAtFor(expiresIn, now, this.#clockToleranceSeconds),
      consumedAt: prepared.consumedAtMs,
      jtiRedacted: prepared.jtiRedacted ? 1 : 0,
      now,
    };
    return () => {
      this.#open().upsert.run(values);
    };
  }

  findSync(model: string, id: string): AdapterPayload | undefined {
    return payloadOf(this.#open().find.get(model, hashIdentifier(id), this.#now()), id);
  }

  findWithGrantSync(model: string, id: string): TokenWithGrant | undefined {
    const values = this.#open().findWithGrant.get(model, hashIdentifier(id), this.#now()) as SQLOutputValue[] | undefined;
    const token = payloadAt(values, 0, id);
    if (!values || !token) return undefined;
    const grantId = typeof token.grantId === 'string' ? token.grantId : undefined;
    if (grantId === undefined) return { token, grant: undefined };
    // The join went by the grant_id column, which upsert derives from this same payload; should
    // the two ever differ, the grant the payload names is read as find(grantId) would.
    return { token, grant: values[6] === grantId ? payloadAt(values, 3, grantId) : this.findSync('Grant', grantId) };
  }

  findByUidSync(model: string, uid: string): AdapterPayload | undefined {
    return payloadOf(this.#open().findByUid.get(model, hashIdentifier(uid), this.#now()), undefined);
  }

  findByUserCodeSync(model: string, userCode: string): AdapterPayload | undefined {
    return payloadOf(this.#open().findByUserCode.get(model, hashIdentifier(userCode), this.#now()), undefined);
  }

  consumeSync(model: string, id: string): void {
    const statements = this.#open();
    const key = hashIdentifier(id);
    const now = this.#now();
    const { changes } = statements.consume.run({ model, key, now });
    if (Number(changes) === 1) {
      return;
    }
    // Nothing changed: tell "someone else consumed it" from "nothing to consume". Both are
    // invalid_grant (a 400), never a 500; the second read only picks the message.
    const state = statements.consumeState.get({ model, key, now });
    throw state === undefined ? grantNotFound() : grantAlreadyConsumed();
  }

  destroySync(model: string, id: string): void {
    this.#open().destroy.run({ model, key: hashIdentifier(id) });
  }

  revokeByGrantIdSync(model: string, grantId: string): void {
    this.#open().revokeByGrantId.run({ model, grantId });
  }

  #open(): Statements {
    if (!this.#db.isOpen) {
      throw new StoreUnavailableError(this.name, { cause: new Error('database is closed') });
    }
    return this.#statements;
  }
}

