import { describe, expect, it } from 'vitest';

import { synthesiseReadings, ukLocal, type Profile } from '../../src/reference-apis/synthetic-readings.ts';
import type { Reading } from '../../src/reference-apis/readings-store.ts';

const sum = (readings: Reading[]) => readings.reduce((total, r) => total + r.kWh, 0);
const localHour = (r: Reading) => ukLocal(r.start).getUTCHours();
const localDay = (r: Reading) => ukLocal(r.start).getUTCDay();

describe('synthetic half-hourly readings', () => {
  const year = (profile: Profile, fuel: 'electricity' | 'gas' = 'electricity') => synthesiseReadings({ from: new Date('2025-01-01T00:00:00Z'), months: 12, profile, fuel, seed: 5 });

  it('covers every half-hour, repeatably, whatever range it is asked for', () => {
    const readings = year('office');
    expect(readings).toHaveLength(365 * 48);
    expect(readings.every((r, i) => r.start.getTime() === Date.UTC(2025, 0, 1) + i * 30 * 60_000)).toBe(true);
    expect(year('office')).toEqual(readings);
    const march = synthesiseReadings({ from: new Date('2025-03-01T00:00:00Z'), months: 1, profile: 'office', seed: 5 });
    const offset = readings.findIndex((r) => r.start.getTime() === Date.UTC(2025, 2, 1));
    expect(march).toEqual(readings.slice(offset, offset + march.length));
    expect(synthesiseReadings({ from: new Date('2025-03-01T00:00:00Z'), months: 1, profile: 'office', seed: 6 })).not.toEqual(march);
  });

  it('has the profile’s yearly energy, a working-day shape, a weekly shape and a seasonal swing', () => {
    for (const profile of ['office', 'shop', 'bakery'] as const) {
      const readings = year(profile);
      const working = readings.filter((r) => localDay(r) >= 1 && localDay(r) <= 5);
      const day = working.filter((r) => localHour(r) >= 9 && localHour(r) < 11);
      const night = working.filter((r) => localHour(r) >= 0 && localHour(r) < 2);
      expect(sum(day) / day.length, profile).toBeGreaterThan(1.8 * (sum(night) / night.length));
      const sundays = readings.filter((r) => localDay(r) === 0);
      expect(sum(sundays) / sundays.length, profile).toBeLessThan(sum(working) / working.length);
      const january = readings.filter((r) => r.start.getUTCMonth() === 0);
      const july = readings.filter((r) => r.start.getUTCMonth() === 6);
      expect(sum(january), profile).toBeGreaterThan(sum(july));
    }
    expect(sum(year('office'))).toBeGreaterThan(40_000);
    expect(sum(year('office'))).toBeLessThan(50_000);
    // Heating: gas in January is several times gas in July for an office, not for a bakery's ovens.
    const officeGas = year('office', 'gas');
    const bakeryGas = year('bakery', 'gas');
    const ratio = (readings: Reading[]) => sum(readings.filter((r) => r.start.getUTCMonth() === 0)) / sum(readings.filter((r) => r.start.getUTCMonth() === 6));
    expect(ratio(officeGas)).toBeGreaterThan(4);
    expect(ratio(bakeryGas)).toBeLessThan(2);
    // A bakery bakes before dawn.
    const bakery = year('bakery').filter((r) => localDay(r) >= 1 && localDay(r) <= 5);
    const ovens = bakery.filter((r) => localHour(r) >= 4 && localHour(r) < 6);
    const evening = bakery.filter((r) => localHour(r) >= 20 && localHour(r) < 22);
    expect(sum(ovens) / ovens.length).toBeGreaterThan(3 * (sum(evening) / evening.length));
  });

  it('keeps UK local time across the clock changes', () => {
    expect(ukLocal(new Date('2025-03-30T00:59:00Z')).getUTCHours()).toBe(0);
    expect(ukLocal(new Date('2025-03-30T01:00:00Z')).getUTCHours()).toBe(2);
    expect(ukLocal(new Date('2025-10-26T00:59:00Z')).getUTCHours()).toBe(1);
    expect(ukLocal(new Date('2025-10-26T01:00:00Z')).getUTCHours()).toBe(1);
    expect(ukLocal(new Date('2025-07-01T12:00:00Z')).getUTCHours()).toBe(13);
    expect(ukLocal(new Date('2025-12-01T12:00:00Z')).getUTCHours()).toBe(12);
  });
});
