import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';

/**
 * Open (creating when needed) the embedded SQLite database.
 *
 * - creates the parent directory (mode 0700) and the file (mode 0600: it holds sessions and
 *   grants; SQLite gives the -wal and -shm files the same mode);
 * - busy_timeout 5000 ms, WAL journal, synchronous NORMAL (durable across process crashes; a
 *   power loss can lose the last commits but never corrupts), foreign keys enforced, a page cache
 *   of `cacheMib` (default 64 MiB).
 *
 * `':memory:'` opens a private in-memory database (tests).
 */
export interface SqliteDatabaseOptions {
  /** Page cache in MiB (SQLITE_CACHE_MIB for the server). Default 64. */
  cacheMib?: number;
}

export function openSqliteDatabase(file: string, options: SqliteDatabaseOptions = {}): DatabaseSync {
  const inMemory = file === ':memory:';
  if (!inMemory) {
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
    // 'a' creates the file when missing and never truncates; the mode only applies on creation.
    closeSync(openSync(file, 'a', 0o600));
  }

  const db = new DatabaseSync(file, { enableForeignKeyConstraints: true });
  try {
    // busy_timeout first: switching to WAL takes a lock another process may hold.
    db.exec('PRAGMA busy_timeout = 5000');
    if (!inMemory) {
      db.exec('PRAGMA journal_mode = WAL');
    }
    db.exec('PRAGMA synchronous = NORMAL');
    db.exec('PRAGMA foreign_keys = ON');
    // A 64 MiB page cache by default: token lookups stay in memory as the store grows (measured
    // in bench/: three lookups 147 µs with SQLite's 2 MiB at 300k stored, 52 µs with 64 MiB).
    // SQLITE_CACHE_MIB raises it. At 1,000,000 stored, 512 MiB did not change introspection's
    // cost in bench/ (116 µs a request against 117 with 64 MiB in one pair of runs): what grows
    // at a million is B-tree depth and memory latency, not cache misses.
    db.exec(`PRAGMA cache_size = -${Math.round((options.cacheMib ?? 64) * 1024)}`);
    // No memory map (mmap_size stays 0). Measured in bench/ with 1 GiB mapped: at 300,000 stored
    // introspection's p99 improved (4.9 -> 3.0 ms), but at 1,000,000 right after seeding it
    // collapsed (p95 150 ms, p99 276 ms, against 4.9 ms unmapped: page faults on first touch),
    // and resident memory grew with the file over a 10-minute soak.
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}

/**
 * Apply a named migration once. The name is recorded in `schema_migrations`; a second call with
 * the same name does nothing. The SQL runs in one transaction with the bookkeeping row (so it
 * must not contain BEGIN/COMMIT itself), under BEGIN IMMEDIATE so two processes starting at the
 * same time cannot both apply it.
 *
 * Names are global to the database: prefix them with the owning module, e.g.
 * `'oidc_model/001_create'`, `'permissions/001_create'`.
 *
 * @returns true when the migration ran now, false when it had already been applied.
 */
export function migrate(db: DatabaseSync, name: string, sql: string): boolean {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    name TEXT PRIMARY KEY NOT NULL,
    applied_at INTEGER NOT NULL
  )`);

  return writeTransaction(db, () => {
    const applied = db.prepare('SELECT 1 AS applied FROM schema_migrations WHERE name = ?').get(name);
    if (applied !== undefined) return false;
    db.exec(sql);
    db.prepare('INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)').run(name, Date.now());
    return true;
  });
}

/** A statement by its SQL, prepared once (see preparedStatements). */
export type Prepared = (sql: string) => StatementSync;

/**
 * One store's statements, each prepared on first use and reused after: preparing costs more than
 * running most of these statements. Pass SQL as constant strings (the text is the cache key).
 *
 * A closed database throws exactly what `db.prepare` throws on a closed database (the error the
 * stores gave before statements were cached), never "statement has been finalized"; the cache is
 * dropped then, so a handle opened again prepares afresh.
 */
export function preparedStatements(db: DatabaseSync): Prepared {
  const cache = new Map<string, StatementSync>();
  return (sql) => {
    if (!db.isOpen) {
      cache.clear();
      return db.prepare(sql);
    }
    let statement = cache.get(sql);
    if (statement === undefined) {
      statement = db.prepare(sql);
      cache.set(sql, statement);
    }
    return statement;
  };
}

let savepoints = 0;

/**
 * Runs synchronous `work` in one write transaction and returns its result: BEGIN IMMEDIATE …
 * COMMIT, so the write lock is taken before anything is read (reads inside see the latest
 * commit of every connection and process sharing the file, and nothing can change it before
 * this commits); inside a transaction already open on this connection, a SAVEPOINT of it. An
 * error rolls back (to the savepoint) and is rethrown.
 *
 * `work` must not await: the connection is shared by every request of the process, and anything
 * that ran in between would join this transaction.
 */
export function writeTransaction<T>(db: DatabaseSync, work: () => T): T {
  const savepoint = db.isTransaction ? `write_${++savepoints}` : undefined;
  db.exec(savepoint ? `SAVEPOINT ${savepoint}` : 'BEGIN IMMEDIATE');
  try {
    const result = work();
    db.exec(savepoint ? `RELEASE ${savepoint}` : 'COMMIT');
    return result;
  } catch (error) {
    // SQLite may already have rolled back by itself (e.g. disk full); then there is nothing to undo.
    if (db.isOpen && db.isTransaction) {
      try {
        db.exec(savepoint ? `ROLLBACK TO ${savepoint}; RELEASE ${savepoint}` : 'ROLLBACK');
      } catch {
        // keep the original error
      }
    }
    throw error;
  }
}
