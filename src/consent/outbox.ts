import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

import { migrate, preparedStatements, writeTransaction, type Prepared } from '../adapters/sqlite-database.ts';

/**
 * The durable outbox for messages to client applications (withdrawal of permission). A message
 * is written in the same store as the decision that caused it, then delivered by a worker with
 * retries and exponential backoff until it is delivered or given up after a configured time.
 * A restart loses nothing: undelivered messages are simply due again. Delivering twice is
 * harmless (the scheme's message is idempotent), so a crash between delivery and marking it
 * delivered only causes a repeat.
 */
export interface OutboxMessage {
  id: string;
  kind: 'withdrawal';
  target: string;
  body: Record<string, unknown>;
  /** One message per (kind, subject): enqueueing the same key twice keeps the first. */
  idempotencyKey: string;
  createdAt: Date;
  attempts: number;
  nextAttemptAt: Date;
  deliveredAt?: Date;
  gaveUpAt?: Date;
  lastError?: string;
}

export interface OutboxStore {
  enqueue(message: Pick<OutboxMessage, 'kind' | 'target' | 'body' | 'idempotencyKey'>, now: Date): Promise<void>;
  /** Takes up to `limit` due messages and leases them for `leaseMs` so no other worker sends them meanwhile. */
  claimDue(now: Date, leaseMs: number, limit: number): Promise<OutboxMessage[]>;
  markDelivered(id: string, at: Date): Promise<void>;
  markFailed(id: string, error: string, retryAt: Date | undefined, at: Date): Promise<void>;
  pending(): Promise<number>;
  all(): Promise<OutboxMessage[]>;
}

interface Row { id: string; kind: 'withdrawal'; target: string; body: string; idempotency_key: string; created_at: number; attempts: number;
  next_attempt_at: number; delivered_at: number | null; gave_up_at: number | null; last_error: string | null }

const toMessage = (r: Row): OutboxMessage => ({
  id: r.id, kind: r.kind, target: r.target, body: JSON.parse(r.body), idempotencyKey: r.idempotency_key, createdAt: new Date(r.created_at),
  attempts: r.attempts, nextAttemptAt: new Date(r.next_attempt_at),
  ...(r.delivered_at !== null ? { deliveredAt: new Date(r.delivered_at) } : {}),
  ...(r.gave_up_at !== null ? { gaveUpAt: new Date(r.gave_up_at) } : {}),
  ...(r.last_error !== null ? { lastError: r.last_error } : {}),
});

export class SqliteOutboxStore implements OutboxStore {
  readonly #db: DatabaseSync;
  readonly #sql: Prepared;
  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#sql = preparedStatements(db);
    migrate(db, 'outbox/001_create', `
      CREATE TABLE outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL, body TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL, delivered_at INTEGER, gave_up_at INTEGER, last_error TEXT);
      CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;
    `);
  }

  async enqueue(m: Pick<OutboxMessage, 'kind' | 'target' | 'body' | 'idempotencyKey'>, now: Date) {
    this.#sql(`INSERT INTO outbox (id, kind, target, body, idempotency_key, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (idempotency_key) DO NOTHING`)
      .run(`msg_${randomBytes(12).toString('base64url')}`, m.kind, m.target, JSON.stringify(m.body), m.idempotencyKey, now.getTime(), now.getTime());
  }

  async claimDue(now: Date, leaseMs: number, limit: number) {
    return writeTransaction(this.#db, () => {
      const rows = this.#sql('SELECT * FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?')
        .all(now.getTime(), limit) as unknown as Row[];
      const lease = this.#sql('UPDATE outbox SET next_attempt_at = ? WHERE id = ?');
      for (const r of rows) lease.run(now.getTime() + leaseMs, r.id);
      return rows.map(toMessage);
    });
  }

  async markDelivered(id: string, at: Date) {
    this.#sql('UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?').run(at.getTime(), id);
  }

  async markFailed(id: string, error: string, retryAt: Date | undefined, at: Date) {
    if (retryAt) this.#sql('UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?').run(retryAt.getTime(), error, id);
    else this.#sql('UPDATE outbox SET attempts = attempts + 1, gave_up_at = ?, last_error = ? WHERE id = ?').run(at.getTime(), error, id);
  }

  async pending() {
    return (this.#sql('SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL AND gave_up_at IS NULL').get() as { n: number }).n;
  }

  async all() {
    return (this.#sql('SELECT * FROM outbox ORDER BY created_at').all() as unknown as Row[]).map(toMessage);
  }
}

export interface OutboxWorkerOptions {
  /** How often to look for due messages. */
  pollMs: number;
  /** First retry delay; doubles with every attempt up to maxBackoffMs. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** After this long since it was queued, a message is given up. */
  giveUpAfterMs: number;
  now: () => Date;
}

export type Deliver = (message: OutboxMessage) => Promise<void>;
export type DeliveryObserver = (message: OutboxMessage, outcome: 'delivered' | 'retry' | 'given_up', error?: string) => void | Promise<void>;

export const LEASE_MS = 15_000;

/** Delivers due messages; one pass at a time, never two passes at once in this process. */
export class OutboxWorker {
  readonly #store: OutboxStore;
  readonly #deliver: Deliver;
  readonly #options: OutboxWorkerOptions;
  readonly #observe: DeliveryObserver;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(store: OutboxStore, deliver: Deliver, options: OutboxWorkerOptions, observe: DeliveryObserver = () => {}) {
    this.#store = store;
    this.#deliver = deliver;
    this.#options = options;
    this.#observe = observe;
  }

  start(): void {
    this.#timer ??= setInterval(() => void this.runOnce().catch(() => {}), this.#options.pollMs);
    this.#timer.unref();
  }

  /** Stops polling and waits for the pass in flight, so shutdown leaves no message half-handled. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** Wakes the worker now (after a withdrawal) instead of waiting for the next poll. */
  nudge(): void {
    void this.runOnce().catch(() => {});
  }

  runOnce(): Promise<void> {
    this.#running ??= this.#pass().finally(() => { this.#running = undefined; });
    return this.#running;
  }

  async #pass(): Promise<void> {
    const { now, initialBackoffMs, maxBackoffMs, giveUpAfterMs } = this.#options;
    // The lease outlasts one delivery attempt (a delivery times out after 10 s) and is short, so a
    // message whose worker died mid-delivery is due again within seconds of the lease ending.
    const due = await this.#store.claimDue(now(), LEASE_MS, 20);
    for (const message of due) {
      try {
        await this.#deliver(message);
        await this.#store.markDelivered(message.id, now());
        await this.#observe(message, 'delivered');
      } catch (err) {
        const error = (err as Error)?.message?.slice(0, 200) ?? 'delivery failed';
        const at = now();
        const retryAt = new Date(at.getTime() + Math.min(maxBackoffMs, initialBackoffMs * 2 ** message.attempts));
        const giveUp = retryAt.getTime() - message.createdAt.getTime() > giveUpAfterMs;
        await this.#store.markFailed(message.id, error, giveUp ? undefined : retryAt, at);
        await this.#observe(message, giveUp ? 'given_up' : 'retry', error);
      }
    }
  }
}
