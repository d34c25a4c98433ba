import type { DatabaseSync } from 'node:sqlite';

import { writeTransaction } from './sqlite-database.ts';

/**
 * Group commit for the embedded store: the writes requested while the event loop handles one
 * round of ready requests run together, in ONE write transaction, right after that round
 * (setImmediate), and each caller's promise settles once that transaction has committed.
 *
 * Why: a commit in WAL mode writes every page the transaction touched, two write calls a page
 * (frame header and page). A refresh touches ~12 pages (token row and its indexes, permission
 * row, history event, audit chain), so one refresh was ~25 write calls and ~100 µs of the ~500 µs
 * it cost (bench/). Concurrent refreshes share the rightmost pages of the history, audit and
 * expiry B-trees, so grouped they write ~18 calls each; refresh went 478 → ~350 µs a request and
 * code exchange 808 → ~555 µs (bench/results/2026-11-28T01-58-01.md). The rest are pages no two
 * refreshes share (a random key's leaf, the permission row).
 *
 * What callers keep:
 * - Durability before the answer: a promise resolves only after COMMIT, so no client is handed a
 *   token or a code that is not in the file.
 * - Isolation: nothing runs until the group does, so no other request reads a write before it is
 *   committed, and no other write on the connection joins the group: the transaction is open only
 *   inside `flush`, which runs synchronously from BEGIN to COMMIT.
 * - One outcome per write: each runs in its own savepoint (writeTransaction inside the group's
 *   transaction), so a write that throws (a code already consumed) rejects its own promise and
 *   rolls back its own changes only. If BEGIN or COMMIT fails, every write of the group rejects
 *   with that error and nothing of the group is kept.
 * - Order: writes run in the order they were requested.
 *
 * `work` runs later than the call: it must capture what it writes at call time (the payload as
 * the caller had it then), not read it when it runs.
 */
export interface GroupCommitOptions {
  /** At most this many writes in one transaction; the next write starts a new group. Default 128. */
  maxGroup?: number;
  /** The error a group gets when the connection is closed by the time it runs. Default: SQLite's own. */
  closedError?: () => Error;
}

interface Pending {
  work: () => unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export class GroupCommit {
  readonly #db: DatabaseSync;
  readonly #maxGroup: number;
  #pending: Pending[] = [];
  #scheduled: NodeJS.Immediate | undefined;
  readonly #closedError: (() => Error) | undefined;

  constructor(db: DatabaseSync, options: GroupCommitOptions = {}) {
    this.#db = db;
    this.#maxGroup = Math.max(1, options.maxGroup ?? 128);
    this.#closedError = options.closedError;
  }

  /** Runs `work` in the next group's transaction; resolves with its result once committed. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      // Called from inside a transaction already open on this connection (synchronous work of
      // another writer): join it now, as writeTransaction does. Its owner commits it, or rolls it
      // back after this promise resolved, as with any nested writeTransaction. No caller in the
      // server does this today; it keeps such a caller from committing someone else's work.
      if (this.#db.isOpen && this.#db.isTransaction) {
        try {
          resolve(writeTransaction(this.#db, work));
        } catch (error) {
          reject(error);
        }
        return;
      }
      this.#pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (this.#pending.length >= this.#maxGroup) this.flush();
      else this.#scheduled ??= setImmediate(() => this.flush());
    });
  }

  /** Writes waiting for their group. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Runs and commits the waiting writes now (close() calls it before the connection closes). */
  flush(): void {
    if (this.#scheduled !== undefined) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    const group = this.#pending;
    this.#pending = [];
    if (group.length === 0) return;
    if (!this.#db.isOpen && this.#closedError) {
      for (const write of group) write.reject(this.#closedError());
      return;
    }
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      writeTransaction(this.#db, () => {
        for (const write of group) {
          try {
            // Inside the group's transaction this is a savepoint: a throw undoes this write only.
            outcomes.push({ ok: true, value: writeTransaction(this.#db, write.work) });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
      });
    } catch (error) {
      // BEGIN or COMMIT failed (or the connection is closed): none of the group was kept.
      for (const write of group) write.reject(error);
      return;
    }
    group.forEach((write, i) => {
      const outcome = outcomes[i];
      if (outcome.ok) write.resolve(outcome.value);
      else write.reject(outcome.error);
    });
  }
}
