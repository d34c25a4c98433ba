import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

import { hashIdentifier } from '../adapters/oidc-adapter-common.ts';
import { migrate, preparedStatements, type Prepared } from '../adapters/sqlite-database.ts';

/**
 * Signed-in sessions of SME users on the dashboard. The cookie carries a random id; the store
 * keeps only its hash. A new id is made at every sign-in (no session fixation).
 */
export interface SmeSession { userId: string; organisationId: string; email: string; expiresAt: Date }

export interface SmeSessionStore {
  create(session: SmeSession): Promise<string>;
  find(id: string, now: Date): Promise<SmeSession | undefined>;
  destroy(id: string): Promise<void>;
}

export class SqliteSmeSessionStore implements SmeSessionStore {
  readonly #sql: Prepared;
  constructor(db: DatabaseSync) {
    this.#sql = preparedStatements(db);
    migrate(db, 'sme-sessions/001_create', `
      CREATE TABLE sme_session (id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, organisation_id TEXT NOT NULL,
        email TEXT NOT NULL, expires_at INTEGER NOT NULL);
      CREATE INDEX sme_session_expiry ON sme_session (expires_at);
    `);
  }

  async create(s: SmeSession): Promise<string> {
    const id = randomBytes(32).toString('base64url');
    this.#sql('DELETE FROM sme_session WHERE expires_at < ?').run(Date.now());
    this.#sql('INSERT INTO sme_session (id_hash, user_id, organisation_id, email, expires_at) VALUES (?, ?, ?, ?, ?)')
      .run(hashIdentifier(id), s.userId, s.organisationId, s.email, s.expiresAt.getTime());
    return id;
  }

  async find(id: string, now: Date) {
    const r = this.#sql('SELECT user_id, organisation_id, email, expires_at FROM sme_session WHERE id_hash = ? AND expires_at > ?')
      .get(hashIdentifier(id), now.getTime()) as { user_id: string; organisation_id: string; email: string; expires_at: number } | undefined;
    return r ? { userId: r.user_id, organisationId: r.organisation_id, email: r.email, expiresAt: new Date(r.expires_at) } : undefined;
  }

  async destroy(id: string) {
    this.#sql('DELETE FROM sme_session WHERE id_hash = ?').run(hashIdentifier(id));
  }
}
