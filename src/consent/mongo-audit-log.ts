/**
 * AuditLog on MongoDB. Same chain as SqliteAuditLog (eventHash, GENESIS_HASH), kept unforked
 * without transactions or locks:
 *
 * - every event is one document `{ _id: seq, kind, at, actor, client, license, ip, userAgent,
 *   detail: '<JSON>', prevHash, hash }` with the number `seq` as `_id`;
 * - append reads the last event (highest `_id`), then inserts seq+1 with that event's hash as
 *   prevHash. The unique `_id` lets exactly one of racing appenders (any number of processes)
 *   take seq+1; a duplicate-key error means someone else did, so the loser reads the new last
 *   event and tries again (bounded). An insert only happens right after reading its
 *   predecessor, so seqs have no gaps and every prevHash is the hash of seq-1: the chain cannot
 *   fork, on FerretDB v1 (whose `_id` inserts are atomic) as on MongoDB.
 *
 * `detail` is stored as JSON text, and the hash is computed from the JSON round trip of the
 * event, so what verify() re-reads hashes exactly as it was written (BSON would turn undefined
 * into null and cannot hold every key). Inserts use write concern `{ w: 'majority' }`.
 */
import type { Connection, mongo } from 'mongoose';

import { eventHash, GENESIS_HASH } from './audit-log.ts';
import type { AuditEvent, AuditKind, AuditLog, StoredAuditEvent } from './audit-log.ts';
import { backoff, ContentionError, DECISION_WRITE_CONCERN, domainCollections, insertClaim, runMongo } from './mongo-common.ts';
import type { MongoDomainOptions } from './mongo-common.ts';

export interface MongoAuditLogOptions extends MongoDomainOptions {
  /** Default `{ w: 'majority', wtimeoutMS: 5000 }`. */
  writeConcern?: mongo.WriteConcernSettings;
  /** How many lost races one append tolerates before it rejects (ContentionError). Default 200. */
  maxAttempts?: number;
}

interface AuditDoc {
  _id: number;
  kind: AuditKind;
  at: Date;
  actor: string;
  client: string | null;
  license: string | null;
  ip: string | null;
  userAgent: string | null;
  detail: string;
  prevHash: string;
  hash: string;
}

function toEvent(d: AuditDoc): StoredAuditEvent {
  return {
    seq: d._id, kind: d.kind, at: d.at, actor: d.actor,
    ...(d.client !== null ? { client: d.client } : {}), ...(d.license !== null ? { license: d.license } : {}),
    ...(d.ip !== null ? { ip: d.ip } : {}), ...(d.userAgent !== null ? { userAgent: d.userAgent } : {}),
    detail: JSON.parse(d.detail) as Record<string, unknown>, prevHash: d.prevHash, hash: d.hash,
  };
}

export class MongoAuditLog implements AuditLog {
  readonly #connection: Connection;
  readonly #name: string;
  readonly #wc: { writeConcern: mongo.WriteConcernSettings };
  readonly #maxAttempts: number;

  constructor(connection: Connection, options: MongoAuditLogOptions = {}) {
    this.#connection = connection;
    this.#name = domainCollections(options.collectionPrefix).auditEvents;
    this.#wc = { writeConcern: options.writeConcern ?? DECISION_WRITE_CONCERN };
    this.#maxAttempts = options.maxAttempts ?? 200;
  }

  #run<T>(operation: (events: mongo.Collection<AuditDoc>) => Promise<T>): Promise<T> {
    return runMongo(this.#connection, (db) => operation(db.collection<AuditDoc>(this.#name)));
  }

  async append(e: AuditEvent): Promise<void> {
    const detail = JSON.stringify(e.detail ?? {});
    // The event exactly as verify() will read it back.
    const stored: AuditEvent = {
      kind: e.kind, at: new Date(e.at.getTime()), actor: e.actor, client: e.client, license: e.license, ip: e.ip, userAgent: e.userAgent,
      detail: JSON.parse(detail) as Record<string, unknown>,
    };
    await this.#run(async (events) => {
      for (let attempt = 0; attempt < this.#maxAttempts; attempt += 1) {
        await backoff(attempt);
        const last = await events.find({}, { projection: { hash: 1 } }).sort({ _id: -1 }).limit(1).next();
        const seq = (last?._id ?? 0) + 1;
        const prevHash = last?.hash ?? GENESIS_HASH;
        const inserted = await insertClaim(events, {
          _id: seq, kind: stored.kind, at: stored.at, actor: stored.actor, client: stored.client ?? null, license: stored.license ?? null,
          ip: stored.ip ?? null, userAgent: stored.userAgent ?? null, detail, prevHash, hash: eventHash(prevHash, seq, stored),
        }, this.#wc);
        if (inserted) return;
      }
      throw new ContentionError('audit append', this.#maxAttempts);
    });
  }

  async list(options: { afterSeq?: number; limit?: number } = {}): Promise<StoredAuditEvent[]> {
    return this.#run(async (events) =>
      (await events.find({ _id: { $gt: options.afterSeq ?? 0 } }).sort({ _id: 1 }).limit(options.limit ?? 1000).toArray()).map(toEvent));
  }

  /** Streams the events in seq order and reports the first break, like SqliteAuditLog.verify. */
  async verify(): Promise<{ ok: true; events: number } | { ok: false; seq: number; problem: string }> {
    return this.#run(async (events) => {
      let prevHash = GENESIS_HASH;
      let expectedSeq = 1;
      let count = 0;
      const cursor = events.find({}).sort({ _id: 1 });
      try {
        for await (const doc of cursor) {
          const e = toEvent(doc);
          if (e.seq !== expectedSeq) return { ok: false as const, seq: e.seq, problem: `event ${expectedSeq} is missing` };
          if (e.prevHash !== prevHash) return { ok: false as const, seq: e.seq, problem: 'does not follow the previous event' };
          if (eventHash(prevHash, e.seq, e) !== e.hash) return { ok: false as const, seq: e.seq, problem: 'its content was changed' };
          prevHash = e.hash;
          expectedSeq += 1;
          count += 1;
        }
      } finally {
        await cursor.close();
      }
      return { ok: true as const, events: count };
    });
  }
}
