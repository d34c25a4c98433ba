import { createHash } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

import { migrate, preparedStatements, writeTransaction, type Prepared } from '../adapters/sqlite-database.ts';

/**
 * The append-only audit log. PAR is the client's assertion that it holds the SME's permission;
 * it is logged with the time, client, license, IP address and user agent, as are the SME's
 * sign-ins and decisions, token issues, refreshes, revocations, expiries and message deliveries.
 *
 * Each event carries the SHA-256 of the previous event and of itself, so a removed, inserted or
 * edited event breaks the chain; `verify` finds the first break.
 */
export type AuditKind = 'par' | 'sign_in' | 'sign_in_failed' | 'decision' | 'token_issued' | 'token_refreshed'
  | 'revocation' | 'withdrawal' | 'expiry_seen' | 'message_delivered' | 'message_given_up';

export interface AuditEvent {
  kind: AuditKind;
  at: Date;
  /** Who acted: a client URL, an SME user id, 'operator' or 'system'. Never an email or a token. */
  actor: string;
  client?: string;
  license?: string;
  ip?: string;
  userAgent?: string;
  detail?: Record<string, unknown>;
}

export interface StoredAuditEvent extends AuditEvent {
  seq: number;
  prevHash: string;
  hash: string;
}

export interface AuditLog {
  append(event: AuditEvent): Promise<void>;
  list(options?: { afterSeq?: number; limit?: number }): Promise<StoredAuditEvent[]>;
  verify(): Promise<{ ok: true; events: number } | { ok: false; seq: number; problem: string }>;
}

export const GENESIS_HASH = '0'.repeat(64);

/** A stable serialisation (sorted keys) so the hash does not depend on property order. */
function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : 1));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
}

export function eventHash(prevHash: string, seq: number, e: AuditEvent): string {
  const body = canonical({ seq, kind: e.kind, at: e.at.toISOString(), actor: e.actor, client: e.client, license: e.license, ip: e.ip, userAgent: e.userAgent, detail: e.detail ?? {} });
  return createHash('sha256').update(`${prevHash}\n${body}`).digest('hex');
}

interface Row { seq: number; kind: AuditKind; at: number; actor: string; client: string | null; license: string | null; ip: string | null; user_agent: string | null; detail: string; prev_hash: string; hash: string }

function toEvent(r: Row): StoredAuditEvent {
  return {
    seq: r.seq, kind: r.kind, at: new Date(r.at), actor: r.actor,
    ...(r.client !== null ? { client: r.client } : {}), ...(r.license !== null ? { license: r.license } : {}),
    ...(r.ip !== null ? { ip: r.ip } : {}), ...(r.user_agent !== null ? { userAgent: r.user_agent } : {}),
    detail: JSON.parse(r.detail), prevHash: r.prev_hash, hash: r.hash,
  };
}

const HEAD = 'SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1';
const INSERT = 'INSERT INTO audit_event (seq, kind, at, actor, client, license, ip, user_agent, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';

export class SqliteAuditLog implements AuditLog {
  readonly #db: DatabaseSync;
  readonly #sql: Prepared;
  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#sql = preparedStatements(db);
    migrate(db, 'audit/001_create', `
      CREATE TABLE audit_event (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, at INTEGER NOT NULL, actor TEXT NOT NULL,
        client TEXT, license TEXT, ip TEXT, user_agent TEXT, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
    `);
  }

  /** The connection this log writes on. */
  get database(): DatabaseSync {
    return this.#db;
  }

  async append(e: AuditEvent): Promise<void> {
    this.appendSync(e);
  }

  /**
   * append inside the caller's write transaction on this connection (Permissions.tokenSaveWork
   * records a token issue and its audit event in one). The head is read inside that transaction,
   * which holds the write lock, so the chain cannot fork across processes either. Outside a
   * transaction it takes one of its own: BEGIN IMMEDIATE serialises appenders, also across
   * processes sharing the file.
   */
  appendSync(e: AuditEvent): void {
    if (!this.#db.isTransaction) {
      writeTransaction(this.#db, () => this.appendSync(e));
      return;
    }
    const last = this.#sql(HEAD).get() as { seq: number; hash: string } | undefined;
    const seq = (last?.seq ?? 0) + 1;
    const prevHash = last?.hash ?? GENESIS_HASH;
    this.#sql(INSERT).run(seq, e.kind, e.at.getTime(), e.actor, e.client ?? null, e.license ?? null, e.ip ?? null, e.userAgent ?? null,
      JSON.stringify(e.detail ?? {}), prevHash, eventHash(prevHash, seq, e));
  }

  async list(options: { afterSeq?: number; limit?: number } = {}): Promise<StoredAuditEvent[]> {
    const rows = this.#sql('SELECT * FROM audit_event WHERE seq > ? ORDER BY seq LIMIT ?').all(options.afterSeq ?? 0, options.limit ?? 1000) as unknown as Row[];
    return rows.map(toEvent);
  }

  async verify() {
    let prevHash = GENESIS_HASH;
    let expectedSeq = 1;
    let count = 0;
    for (const row of this.#db.prepare('SELECT * FROM audit_event ORDER BY seq').iterate() as Iterable<Row>) {
      const e = toEvent(row);
      if (e.seq !== expectedSeq) return { ok: false as const, seq: e.seq, problem: `event ${expectedSeq} is missing` };
      if (e.prevHash !== prevHash) return { ok: false as const, seq: e.seq, problem: 'does not follow the previous event' };
      if (eventHash(prevHash, e.seq, e) !== e.hash) return { ok: false as const, seq: e.seq, problem: 'its content was changed' };
      prevHash = e.hash;
      expectedSeq += 1;
      count += 1;
    }
    return { ok: true as const, events: count };
  }
}
