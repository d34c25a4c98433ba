/**
 * OutboxStore on MongoDB. One document per message:
 *
 *   { _id: 'msg_<H(idempotencyKey)>', idempotencyKey, kind, target, body: '<JSON>', createdAt,
 *     attempts, nextAttemptAt, deliveredAt: Date | null, gaveUpAt: Date | null, lastError }
 *
 * - The message id is derived from the idempotency key (base64url SHA-256, 96 bits kept), so
 *   "one message per key" is the unique `_id` itself: a second enqueue of the key is a
 *   duplicate-key insert, ignored (the first message is kept), with or without indexes.
 * - claimDue finds due messages and leases each with an update conditional on the
 *   `nextAttemptAt` it read. On MongoDB that update is atomic: exactly one worker gets each
 *   message. On FerretDB v1 conditional updates are not atomic, so two workers may rarely both
 *   lease (and send) one message; that is acceptable because delivery is idempotent (the
 *   scheme's withdrawal message can be received twice, see outbox.ts), and the message ends
 *   delivered either way. A FerretDB whole-document update racing the lease may likewise undo a
 *   markDelivered/markFailed of a doubly leased message: the result is one more delivery.
 * - `body` is JSON text so it comes back exactly as queued.
 */
import type { Connection, mongo } from 'mongoose';

import { hashIdentifier } from '../adapters/oidc-adapter-common.ts';
import { domainCollections, insertClaim, runMongo } from './mongo-common.ts';
import type { MongoDomainOptions } from './mongo-common.ts';
import type { OutboxMessage, OutboxStore } from './outbox.ts';

export type MongoOutboxStoreOptions = MongoDomainOptions;

interface OutboxDoc {
  _id: string;
  idempotencyKey: string;
  kind: 'withdrawal';
  target: string;
  body: string;
  createdAt: Date;
  attempts: number;
  nextAttemptAt: Date;
  deliveredAt: Date | null;
  gaveUpAt: Date | null;
  lastError: string | null;
}

/** The id of the message of `idempotencyKey`. */
export function outboxMessageId(idempotencyKey: string): string {
  return `msg_${hashIdentifier(idempotencyKey).slice(0, 16)}`;
}

const toMessage = (d: OutboxDoc): OutboxMessage => ({
  id: d._id, kind: d.kind, target: d.target, body: JSON.parse(d.body) as Record<string, unknown>, idempotencyKey: d.idempotencyKey,
  createdAt: d.createdAt, attempts: d.attempts, nextAttemptAt: d.nextAttemptAt,
  ...(d.deliveredAt ? { deliveredAt: d.deliveredAt } : {}),
  ...(d.gaveUpAt ? { gaveUpAt: d.gaveUpAt } : {}),
  ...(d.lastError !== null && d.lastError !== undefined ? { lastError: d.lastError } : {}),
});

const OPEN = { deliveredAt: null, gaveUpAt: null } as const;

export class MongoOutboxStore implements OutboxStore {
  readonly #connection: Connection;
  readonly #name: string;

  constructor(connection: Connection, options: MongoOutboxStoreOptions = {}) {
    this.#connection = connection;
    this.#name = domainCollections(options.collectionPrefix).outbox;
  }

  #run<T>(operation: (outbox: mongo.Collection<OutboxDoc>) => Promise<T>): Promise<T> {
    return runMongo(this.#connection, (db) => operation(db.collection<OutboxDoc>(this.#name)));
  }

  async enqueue(m: Pick<OutboxMessage, 'kind' | 'target' | 'body' | 'idempotencyKey'>, now: Date) {
    await this.#run(async (outbox) => {
      await insertClaim(outbox, {
        _id: outboxMessageId(m.idempotencyKey), idempotencyKey: m.idempotencyKey, kind: m.kind, target: m.target, body: JSON.stringify(m.body),
        createdAt: now, attempts: 0, nextAttemptAt: now, deliveredAt: null, gaveUpAt: null, lastError: null,
      });
    });
  }

  async claimDue(now: Date, leaseMs: number, limit: number) {
    return this.#run(async (outbox) => {
      const due = await outbox.find({ ...OPEN, nextAttemptAt: { $lte: now } }).sort({ nextAttemptAt: 1, _id: 1 }).limit(limit).toArray();
      const claimed: OutboxMessage[] = [];
      const leasedUntil = new Date(now.getTime() + leaseMs);
      for (const doc of due) {
        // Conditional on what we read: another worker's lease moved nextAttemptAt (atomic on
        // MongoDB; on FerretDB a rare double lease is harmless, see the module comment).
        const { matchedCount } = await outbox.updateOne({ _id: doc._id, ...OPEN, nextAttemptAt: doc.nextAttemptAt }, { $set: { nextAttemptAt: leasedUntil } });
        if (matchedCount === 1) claimed.push(toMessage(doc));
      }
      return claimed;
    });
  }

  async markDelivered(id: string, at: Date) {
    await this.#run(async (outbox) => {
      // One worker holds the lease, so the increment has no concurrent writer.
      await outbox.updateOne({ _id: id }, { $set: { deliveredAt: at, lastError: null }, $inc: { attempts: 1 } });
    });
  }

  async markFailed(id: string, error: string, retryAt: Date | undefined, at: Date) {
    await this.#run(async (outbox) => {
      const set = retryAt ? { nextAttemptAt: retryAt, lastError: error } : { gaveUpAt: at, lastError: error };
      await outbox.updateOne({ _id: id }, { $set: set, $inc: { attempts: 1 } });
    });
  }

  async pending() {
    return this.#run((outbox) => outbox.countDocuments(OPEN));
  }

  async all() {
    return this.#run(async (outbox) => (await outbox.find({}).sort({ createdAt: 1, _id: 1 }).toArray()).map(toMessage));
  }
}
