/**
 * AuditLog on MongoDB. Same chain as SqliteAuditLog (eventHash, GENESIS_HASH), kept unforked
 * without transactions or locks:
 *
 * - every event is one document `{ _id: seq, kind, at, actor, client, license, ip, userAgent,
 *   detail: '<JSON>', prevHash, hash }` with the number `seq` as `_id`;
 * - append inserts seq+1 with the hash of event seq as prevHash. The unique `_id` lets exactly
 *   one of racing appenders (any number of processes) take seq+1; a duplicate-key error means
 *   someone else did, so the loser learns the newer event and tries again (bounded). An insert
 *   only happens with its predecessor's real hash, so seqs have no gaps and every prevHash is
 *   the hash of seq-1: the chain cannot fork, on FerretDB v1 (whose `_id` inserts are atomic) as
 *   on MongoDB.
 * - Where seq comes from, without sorting the log on every append (FerretDB v1 sorts by reading
 *   and decoding the whole collection, and the log only grows): `audit_head` holds
 *   `{ _id: 'head', seq, hash }`, moved forward after each insert. It is a hint: a stale one
 *   only makes the insert fail with a duplicate key, after which the writer reads it again (or,
 *   when it still lags, the event that took its seq, by `_id`) and tries the next seq. Without a
 *   head document (an empty log, or a log written before this layout) the last event is found
 *   by sorting, once: the next append writes the head document.
 * - Appends of one instance run one at a time, so they never race each other.
 *
 * `detail` is stored as JSON text, and the hash is computed from the JSON round trip of the
 * event, so what verify() re-reads hashes exactly as it was written (BSON would turn undefined
 * into null and cannot hold every key). Inserts use write concern `{ w: 'majority' }`.
 */
import type { Connection, mongo } from 'mongoose';

import { eventHash, GENESIS_HASH } from './audit-log.ts';
import type { AuditEvent, AuditKind, AuditLog, StoredAuditEvent } from './audit-log.ts';
import { backoff, ContentionError, DECISION_WRITE_CONCERN, domainCollections, insertClaim, isDuplicateKey, runMongo } from './mongo-common.ts';
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

/** The newest event as far as a writer knows: `{ _id: 'head', seq, hash }` in its own collection. */
interface HeadDoc {
  _id: 'head';
  seq: number;
  hash: string;
}

interface Head {
  seq: number;
  hash: string;
}

const GENESIS: Head = { seq: 0, hash: GENESIS_HASH };

export class MongoAuditLog implements AuditLog {
  readonly #connection: Connection;
  readonly #name: string;
  readonly #headName: string;
  readonly #wc: { writeConcern: mongo.WriteConcernSettings };
  readonly #maxAttempts: number;
  /** Appends of this instance, one after the other (they would only race each other). */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(connection: Connection, options: MongoAuditLogOptions = {}) {
    this.#connection = connection;
    const names = domainCollections(options.collectionPrefix);
    this.#name = names.auditEvents;
    this.#headName = names.auditHead;
    this.#wc = { writeConcern: options.writeConcern ?? DECISION_WRITE_CONCERN };
    this.#maxAttempts = options.maxAttempts ?? 200;
  }

  #run<T>(operation: (events: mongo.Collection<AuditDoc>, head: mongo.Collection<HeadDoc>) => Promise<T>): Promise<T> {
    return runMongo(this.#connection, (db) => operation(db.collection<AuditDoc>(this.#name), db.collection<HeadDoc>(this.#headName)));
  }

  /**
   * The newest event the head document names; without one (an empty log, or events written
   * before the head document existed), the event with the highest seq, found once by sorting.
   */
  async #readHead(events: mongo.Collection<AuditDoc>, heads: mongo.Collection<HeadDoc>): Promise<Head> {
    const doc = await heads.findOne({ _id: 'head' });
    if (doc !== null) return { seq: doc.seq, hash: doc.hash };
    const last = await events.find({}, { projection: { hash: 1 } }).sort({ _id: -1 }).limit(1).next();
    return last === null ? GENESIS : { seq: last._id, hash: last.hash };
  }

  async append(e: AuditEvent): Promise<void> {
    const detail = JSON.stringify(e.detail ?? {});
    // The event exactly as verify() will read it back.
    const stored: AuditEvent = {
      kind: e.kind, at: new Date(e.at.getTime()), actor: e.actor, client: e.client, license: e.license, ip: e.ip, userAgent: e.userAgent,
      detail: JSON.parse(detail) as Record<string, unknown>,
    };
    const run = this.#queue.then(() => this.#append(stored, detail));
    this.#queue = run.catch(() => undefined);
    await run;
  }

  async #append(stored: AuditEvent, detail: string): Promise<void> {
    await this.#run(async (events, heads) => {
      let next: Head | undefined;
      for (let attempt = 0; attempt < this.#maxAttempts; attempt += 1) {
        await backoff(attempt);
        const prev = next ?? (await this.#readHead(events, heads));
        next = undefined;
        const seq = prev.seq + 1;
        const hash = eventHash(prev.hash, seq, stored);
        const inserted = await insertClaim(events, {
          _id: seq, kind: stored.kind, at: stored.at, actor: stored.actor, client: stored.client ?? null, license: stored.license ?? null,
          ip: stored.ip ?? null, userAgent: stored.userAgent ?? null, detail, prevHash: prev.hash, hash,
        }, this.#wc);
        if (inserted) {
          await this.#advanceHead(heads, seq, hash);
          return;
        }
        // seq was taken by another writer (another process or instance). The head document is
        // usually past it already (read again at the top of the loop); when it lags (its writer
        // is slow, or stopped between its two writes), step to the event that took seq.
        const head = await this.#readHead(events, heads);
        if (head.seq > prev.seq) {
          next = head;
          continue;
        }
        const taken = await events.findOne({ _id: seq }, { projection: { hash: 1 } });
        if (taken !== null) next = { seq, hash: taken.hash };
      }
      throw new ContentionError('audit append', this.#maxAttempts);
    });
  }

  /**
   * Moves the head document to (seq, hash) unless it is ahead. It is a hint: the chain's
   * correctness rests on the unique `_id` of each event, so a head that lags (FerretDB v1 may
   * apply a slower, older write last) only costs the next writer a step.
   */
  async #advanceHead(heads: mongo.Collection<HeadDoc>, seq: number, hash: string): Promise<void> {
    try {
      await heads.updateOne({ _id: 'head', seq: { $lt: seq } }, { $set: { seq, hash } }, { upsert: true });
    } catch (error) {
      // The filter did not match because the head is at or past seq; the upsert then tried
      // to insert a second 'head'.
      if (!isDuplicateKey(error)) throw error;
    }
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
