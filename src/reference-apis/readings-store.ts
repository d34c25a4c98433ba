// Half-hourly meter readings of the reference energy data provider: a small store interface and
// its SQLite implementation (node:sqlite, through the project's openSqliteDatabase/migrate).
import type { DatabaseSync } from 'node:sqlite';

import { migrate } from '../adapters/sqlite-database.ts';
import { addMonths, HALF_HOUR_MS, halfHoursIn, monthsIn } from './months.ts';

export type Measure = 'import' | 'export';
export const MEASURES: readonly Measure[] = ['import', 'export'];

/** One half-hour of energy through a meter. */
export interface Reading {
  /** Start of the half-hour (UTC, on :00 or :30). */
  start: Date;
  kWh: number;
  /** When the meter reported it (after the half-hour closed). */
  takenAt: Date;
}

export interface ReadingStore {
  /** Adds or replaces readings (keyed by meter, measure and half-hour); returns how many were written. */
  put(meter: string, measure: Measure, readings: Reading[]): Promise<number>;
  /** Readings in [from, to), oldest first. */
  range(meter: string, measure: Measure, from: Date, to: Date): Promise<Reading[]>;
  /** First days of the months in [from, to) that do not have every half-hour loaded yet. */
  missingMonths(meter: string, measure: Measure, from: Date, to: Date): Promise<Date[]>;
}

export class ReadingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReadingError';
  }
}

/** Checks a reading before it is stored: aligned half-hour, finite non-negative energy. */
export function assertReading(reading: Reading): void {
  const t = reading.start.getTime();
  if (!Number.isFinite(t) || t % HALF_HOUR_MS !== 0) throw new ReadingError(`${reading.start.toISOString?.() ?? reading.start} is not the start of a half-hour`);
  if (!Number.isFinite(reading.kWh) || reading.kWh < 0) throw new ReadingError(`energy at ${reading.start.toISOString()} must be a number of kWh, 0 or more`);
  if (!Number.isFinite(reading.takenAt.getTime())) throw new ReadingError(`takenAt at ${reading.start.toISOString()} is not a date`);
}

/** The usual takenAt: a meter reports an interval once it has closed, so one half-hour after its end. */
export function defaultTakenAt(start: Date): Date {
  return new Date(start.getTime() + 2 * HALF_HOUR_MS);
}

export class SqliteReadingStore implements ReadingStore {
  readonly #db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    migrate(db, 'reference_readings/001_create', `
      CREATE TABLE reference_readings (
        meter TEXT NOT NULL,
        measure TEXT NOT NULL CHECK (measure IN ('import', 'export')),
        start INTEGER NOT NULL,
        kwh REAL NOT NULL,
        taken_at INTEGER NOT NULL,
        PRIMARY KEY (meter, measure, start)
      ) WITHOUT ROWID;
    `);
  }

  async put(meter: string, measure: Measure, readings: Reading[]): Promise<number> {
    for (const reading of readings) assertReading(reading);
    const insert = this.#db.prepare(`INSERT INTO reference_readings (meter, measure, start, kwh, taken_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (meter, measure, start) DO UPDATE SET kwh = excluded.kwh, taken_at = excluded.taken_at`);
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      for (const r of readings) insert.run(meter, measure, r.start.getTime() / 1000, r.kWh, Math.floor(r.takenAt.getTime() / 1000));
      this.#db.exec('COMMIT');
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw error;
    }
    return readings.length;
  }

  async range(meter: string, measure: Measure, from: Date, to: Date): Promise<Reading[]> {
    const rows = this.#db.prepare(`SELECT start, kwh, taken_at FROM reference_readings
      WHERE meter = ? AND measure = ? AND start >= ? AND start < ? ORDER BY start`)
      .all(meter, measure, from.getTime() / 1000, to.getTime() / 1000) as Array<{ start: number; kwh: number; taken_at: number }>;
    return rows.map((row) => ({ start: new Date(row.start * 1000), kWh: row.kwh, takenAt: new Date(row.taken_at * 1000) }));
  }

  async missingMonths(meter: string, measure: Measure, from: Date, to: Date): Promise<Date[]> {
    const count = this.#db.prepare(`SELECT count(*) AS n FROM reference_readings WHERE meter = ? AND measure = ? AND start >= ? AND start < ?`);
    return monthsIn(from, to).filter((month) => {
      const end = addMonths(month, 1);
      const { n } = count.get(meter, measure, month.getTime() / 1000, end.getTime() / 1000) as { n: number };
      return n < halfHoursIn(month, end);
    });
  }
}
