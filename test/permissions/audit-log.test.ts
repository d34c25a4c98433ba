import { describe, expect, it } from 'vitest';

import { openSqliteDatabase } from '../../src/adapters/sqlite-database.ts';
import { SqliteAuditLog } from '../../src/consent/audit-log.ts';

async function logWith(n: number) {
  const db = openSqliteDatabase(':memory:');
  const audit = new SqliteAuditLog(db);
  for (let i = 0; i < n; i++) {
    await audit.append({ kind: i % 2 ? 'token_issued' : 'par', at: new Date(Date.UTC(2026, 0, 1, 0, i)), actor: 'https://bank.example/app', client: 'https://bank.example/app', ip: '127.0.0.1', detail: { i } });
  }
  return { db, audit };
}

describe('the audit log is a hash chain that shows any gap or edit', () => {
  it('verifies an untouched chain', async () => {
    const { audit } = await logWith(5);
    expect(await audit.verify()).toEqual({ ok: true, events: 5 });
  });

  it('catches an edited event', async () => {
    const { db, audit } = await logWith(5);
    db.prepare("UPDATE audit_event SET actor = 'https://evil.example/app' WHERE seq = 3").run();
    expect(await audit.verify()).toMatchObject({ ok: false, seq: 3, problem: 'its content was changed' });
  });

  it('catches an edited detail, even one that keeps valid JSON', async () => {
    const { db, audit } = await logWith(4);
    db.prepare(`UPDATE audit_event SET detail = '{"i":99}' WHERE seq = 2`).run();
    expect(await audit.verify()).toMatchObject({ ok: false, seq: 2 });
  });

  it('catches a removed event', async () => {
    const { db, audit } = await logWith(5);
    db.prepare('DELETE FROM audit_event WHERE seq = 2').run();
    expect(await audit.verify()).toMatchObject({ ok: false, seq: 3, problem: 'event 2 is missing' });
  });

  it('catches an event rewritten together with its own hash', async () => {
    const { db, audit } = await logWith(5);
    const { eventHash } = await import('../../src/consent/audit-log.ts');
    const prev = (db.prepare('SELECT hash FROM audit_event WHERE seq = 2').get() as { hash: string }).hash;
    const forged = eventHash(prev, 3, { kind: 'par', at: new Date(Date.UTC(2026, 0, 1, 0, 2)), actor: 'forged', client: 'https://bank.example/app', ip: '127.0.0.1', detail: { i: 2 } });
    db.prepare("UPDATE audit_event SET actor = 'forged', hash = ? WHERE seq = 3").run(forged);
    // Event 3 now checks out by itself, but event 4 no longer follows it.
    expect(await audit.verify()).toMatchObject({ ok: false, seq: 4, problem: 'does not follow the previous event' });
  });
});
