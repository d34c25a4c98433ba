// Synthetic half-hourly consumption for demos and tests, and the CSV reader for real readings.
//
// The synthetic shape: a business's hours in UK local time (opening hours, weekends, Christmas
// closures), a seasonal swing (more in winter: lighting, heating), a day-to-day swing and
// half-hour noise. Randomness is a pure function of (seed, half-hour), so a month synthesised
// alone equals the same month synthesised within a year: tests and demos are repeatable.
import { createHash } from 'node:crypto';

import { addMonths, HALF_HOUR_MS } from './months.ts';
import { defaultTakenAt, ReadingError, type Reading } from './readings-store.ts';

export type Profile = 'office' | 'shop' | 'bakery';
export const PROFILES: readonly Profile[] = ['office', 'shop', 'bakery'];
export type Fuel = 'electricity' | 'gas';

interface ProfileShape {
  /** Typical yearly energy, kWh. */
  annualKWh: Record<Fuel, number>;
  /** Relative demand at local hour h (0-23.5 in half-hour steps) on an open day / a closed day. */
  open: (h: number, fuel: Fuel) => number;
  closed: (h: number, fuel: Fuel) => number;
  /** Is the business open on this local weekday (0 = Sunday)? Saturdays may be shorter. */
  openOn: (weekday: number) => boolean;
  /** Extra factor on Saturdays when open. */
  saturday: number;
  /** Winter/summer swing of electricity (fraction); gas follows heating demand instead. */
  seasonalElectricity: number;
  /** Share of gas that does not follow the weather (hot water, cooking, ovens). */
  gasProcessShare: number;
}

const between = (h: number, from: number, to: number) => h >= from && h < to;

const SHAPES: Record<Profile, ProfileShape> = {
  // Offices: weekdays 08:00-18:00, IT and standby at night and at weekends; gas heats the building.
  office: {
    annualKWh: { electricity: 45_000, gas: 60_000 },
    open: (h, fuel) => fuel === 'electricity'
      ? (between(h, 8, 18) ? 1 : between(h, 7, 8) || between(h, 18, 20) ? 0.6 : 0.28)
      : (between(h, 6, 17) ? 1 : 0.08),
    closed: (_h, fuel) => (fuel === 'electricity' ? 0.26 : 0.05),
    openOn: (weekday) => weekday >= 1 && weekday <= 5,
    saturday: 1,
    seasonalElectricity: 0.18,
    gasProcessShare: 0.15,
  },
  // Shops: Monday to Saturday 09:00-17:30, Sunday 10:00-16:00; refrigeration all night.
  shop: {
    annualKWh: { electricity: 30_000, gas: 25_000 },
    open: (h, fuel) => fuel === 'electricity'
      ? (between(h, 9, 17.5) ? 1 : between(h, 8, 9) || between(h, 17.5, 18.5) ? 0.55 : 0.3)
      : (between(h, 7, 17.5) ? 1 : 0.1),
    closed: (h, fuel) => fuel === 'electricity' ? (between(h, 10, 16) ? 0.75 : 0.3) : (between(h, 9, 16) ? 0.6 : 0.1),
    openOn: (weekday) => weekday >= 1 && weekday <= 6,
    saturday: 1.1,
    seasonalElectricity: 0.15,
    gasProcessShare: 0.2,
  },
  // Bakeries: ovens from 03:00 to 11:00, the shop until 17:00, closed on Sundays.
  bakery: {
    annualKWh: { electricity: 55_000, gas: 90_000 },
    open: (h, fuel) => fuel === 'electricity'
      ? (between(h, 3, 11) ? 1 : between(h, 11, 17) ? 0.45 : 0.2)
      : (between(h, 3, 10) ? 1 : between(h, 10, 14) ? 0.35 : 0.05),
    closed: (_h, fuel) => (fuel === 'electricity' ? 0.2 : 0.04),
    openOn: (weekday) => weekday >= 1 && weekday <= 6,
    saturday: 0.9,
    seasonalElectricity: 0.08,
    gasProcessShare: 0.7,
  },
};

/** Last Sunday of a month at 01:00 UTC: when UK clocks change. */
function lastSundayOneAm(year: number, month: number): number {
  const last = new Date(Date.UTC(year, month + 1, 0, 1));
  return last.getTime() - last.getUTCDay() * 86_400_000;
}

/** The UK local time of an instant (GMT, or BST from the last Sunday of March to the last Sunday of October). */
export function ukLocal(t: Date): Date {
  const year = t.getUTCFullYear();
  const bst = t.getTime() >= lastSundayOneAm(year, 2) && t.getTime() < lastSundayOneAm(year, 9);
  return new Date(t.getTime() + (bst ? 3_600_000 : 0));
}

/** A 32-bit hash of integers, for random numbers that depend only on their inputs. */
function mix(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** Uniform in [0, 1) from the inputs. */
function uniform(...values: number[]): number {
  return (mix(...values) + 0.5) / 4_294_967_296;
}

/** Standard normal from the inputs (Box-Muller). */
function normal(...values: number[]): number {
  const u1 = uniform(...values, 1);
  const u2 = uniform(...values, 2);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** A seed from text (the meter, the profile): the same meter always gets the same data. */
export function seedOf(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32BE(0);
}

/** Average outdoor temperature of a UK day (°C), peaking in late July. */
function temperature(dayOfYear: number): number {
  return 10.5 - 6.5 * Math.cos((2 * Math.PI * (dayOfYear - 20)) / 365.25);
}

function dayOfYear(d: Date): number {
  return Math.floor((d.getTime() - Date.UTC(d.getUTCFullYear(), 0, 1)) / 86_400_000);
}

export interface SynthOptions {
  from: Date;
  months: number;
  profile?: Profile;
  fuel?: Fuel;
  seed?: number;
  /** Scales the profile's typical yearly energy. Default 1. */
  scale?: number;
}

/** Relative demand of one half-hour (before noise), for a profile and fuel. */
function demand(shape: ProfileShape, fuel: Fuel, t: Date): number {
  const local = ukLocal(t);
  const h = local.getUTCHours() + local.getUTCMinutes() / 60;
  const weekday = local.getUTCDay();
  const christmas = local.getUTCMonth() === 11 && (local.getUTCDate() === 25 || local.getUTCDate() === 26);
  const open = shape.openOn(weekday) && !christmas;
  let value = open ? shape.open(h, fuel) * (weekday === 6 ? shape.saturday : 1) : shape.closed(h, fuel);
  const doy = dayOfYear(local);
  if (fuel === 'electricity') {
    value *= 1 + shape.seasonalElectricity * Math.cos((2 * Math.PI * (doy - 15)) / 365.25);
  } else {
    // Space heating follows heating degrees (base 15.5 °C); hot water, cooking and ovens do not.
    const degrees = Math.max(0, 15.5 - temperature(doy));
    value *= shape.gasProcessShare + (1 - shape.gasProcessShare) * (degrees / 9);
  }
  return value;
}

/** Mean of `demand` over a whole reference year, to scale the profile to its yearly energy. */
const meanCache = new Map<string, number>();
function meanDemand(profile: Profile, fuel: Fuel): number {
  const key = `${profile}/${fuel}`;
  let mean = meanCache.get(key);
  if (mean === undefined) {
    let sum = 0;
    const start = Date.UTC(2023, 0, 1);
    const n = 365 * 48;
    for (let i = 0; i < n; i++) sum += demand(SHAPES[profile], fuel, new Date(start + i * HALF_HOUR_MS));
    mean = sum / n;
    meanCache.set(key, mean);
  }
  return mean;
}

/** Half-hourly readings for [from, from + months). */
export function synthesiseReadings(options: SynthOptions): Reading[] {
  const profile = options.profile ?? 'office';
  const fuel = options.fuel ?? 'electricity';
  const shape = SHAPES[profile];
  if (!shape) throw new ReadingError(`unknown profile ${JSON.stringify(profile)}; use one of ${PROFILES.join(', ')}`);
  if (!Number.isInteger(options.months) || options.months < 1 || options.months > 120) throw new ReadingError('months must be a whole number from 1 to 120');
  const seed = options.seed ?? 1;
  const perHalfHour = (shape.annualKWh[fuel] * (options.scale ?? 1)) / (365 * 48) / meanDemand(profile, fuel);
  const readings: Reading[] = [];
  const end = addMonths(options.from, options.months).getTime();
  for (let t = options.from.getTime(); t < end; t += HALF_HOUR_MS) {
    const slot = t / HALF_HOUR_MS;
    const day = Math.floor(t / 86_400_000);
    const start = new Date(t);
    const dayFactor = 1 + 0.07 * normal(seed, day, 7);
    const noise = 1 + 0.12 * normal(seed, slot, 11);
    const kWh = Math.max(0, perHalfHour * demand(shape, fuel, start) * Math.max(0.3, dayFactor) * Math.max(0.05, noise));
    readings.push({ start, kWh: Math.round(kWh * 1000) / 1000, takenAt: defaultTakenAt(start) });
  }
  return readings;
}

/**
 * Readings from CSV text: `timestamp,kWh` (an optional third column `takenAt`), a header line
 * allowed, `#` comments and blank lines skipped. timestamp is ISO 8601 with Z or an offset and
 * must start a half-hour.
 */
export function parseReadingsCsv(text: string): Reading[] {
  const readings: Reading[] = [];
  const seen = new Set<number>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line || line.startsWith('#')) continue;
    const cells = line.split(',').map((cell) => cell.trim().replace(/^"(.*)"$/, '$1'));
    if (i === 0 && /^timestamp$/i.test(cells[0])) continue;
    const where = `line ${i + 1}`;
    if (cells.length < 2 || cells.length > 3) throw new ReadingError(`${where}: expected timestamp,kWh[,takenAt]`);
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(cells[0])) {
      throw new ReadingError(`${where}: timestamp ${JSON.stringify(cells[0])} must be ISO 8601 with Z or an offset`);
    }
    const start = new Date(cells[0]);
    if (Number.isNaN(start.getTime()) || start.getTime() % HALF_HOUR_MS !== 0) throw new ReadingError(`${where}: ${cells[0]} is not the start of a half-hour`);
    if (seen.has(start.getTime())) throw new ReadingError(`${where}: ${cells[0]} appears twice`);
    seen.add(start.getTime());
    const kWh = Number(cells[1]);
    if (cells[1] === '' || !Number.isFinite(kWh) || kWh < 0) throw new ReadingError(`${where}: kWh ${JSON.stringify(cells[1])} must be a number, 0 or more`);
    const takenAt = cells[2] ? new Date(cells[2]) : defaultTakenAt(start);
    if (Number.isNaN(takenAt.getTime())) throw new ReadingError(`${where}: takenAt ${JSON.stringify(cells[2])} is not a date`);
    readings.push({ start, kWh, takenAt });
  }
  return readings;
}
