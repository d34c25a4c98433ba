import { describe, expect, it } from 'vitest';

import { dataPeriod, defaultDataAvailableFrom, describeDataPeriod, firstWholeMonthOnOrAfter } from '../../src/consent/data-period.ts';
import { permissionExpiry } from '../../src/consent/licenses.ts';

const at = (iso: string) => new Date(iso);
const FAR_BACK = at('2000-01-01T00:00:00Z');

/** The period as ISO strings, for readable comparisons. */
function period(now: string, availableFrom: Date | string, maxMonths?: number) {
  const p = dataPeriod(at(now), typeof availableFrom === 'string' ? at(availableFrom) : availableFrom, maxMonths);
  return { from: p.from.toISOString(), to: p.to.toISOString(), months: p.months };
}

describe('dataPeriod serves whole calendar months (UTC) up to the start of the current month', () => {
  it('gives the 12 months 2024-07-01..2025-07-01 mid-July 2025 when data is available from far back', () => {
    expect(period('2025-07-15T10:30:00Z', FAR_BACK)).toEqual({ from: '2024-07-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 12 });
  });

  it('gives the same 12 months exactly at the first instant of July 2025 (the new month is not yet served)', () => {
    expect(period('2025-07-01T00:00:00Z', FAR_BACK)).toEqual({ from: '2024-07-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 12 });
  });

  it('still ends at 2025-06-01 one millisecond before July 2025', () => {
    expect(period('2025-06-30T23:59:59.999Z', FAR_BACK)).toEqual({ from: '2024-06-01T00:00:00.000Z', to: '2025-06-01T00:00:00.000Z', months: 12 });
  });

  it('works in UTC whatever the clock: 2025-07-01T00:30+01:00 is still June in UTC', () => {
    expect(period('2025-07-01T00:30:00+01:00', FAR_BACK).to).toBe('2025-06-01T00:00:00.000Z');
  });

  it('starts at the next month when data is available from the middle of a month (2025-03-10 gives 2025-04-01)', () => {
    expect(period('2025-07-15T00:00:00Z', '2025-03-10T00:00:00Z')).toEqual({ from: '2025-04-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 3 });
  });

  it('starts at the next month when data is available from one millisecond into a month', () => {
    expect(period('2025-07-15T00:00:00Z', '2025-03-01T00:00:00.001Z').from).toBe('2025-04-01T00:00:00.000Z');
  });

  it('starts at that month when data is available from exactly 2025-03-01T00:00Z', () => {
    expect(period('2025-07-15T00:00:00Z', '2025-03-01T00:00:00Z')).toEqual({ from: '2025-03-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 4 });
  });

  it('is capped by maxMonths even when more data is available', () => {
    expect(period('2025-07-15T00:00:00Z', '2024-12-01T00:00:00Z', 3)).toEqual({ from: '2025-04-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 3 });
    expect(period('2025-07-15T00:00:00Z', FAR_BACK, 24)).toEqual({ from: '2023-07-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 24 });
    expect(period('2025-07-15T00:00:00Z', FAR_BACK, 1)).toEqual({ from: '2025-06-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 1 });
  });

  it('counts months across a year boundary (now 2025-02-10, maxMonths 14)', () => {
    expect(period('2025-02-10T00:00:00Z', FAR_BACK, 14)).toEqual({ from: '2023-12-01T00:00:00.000Z', to: '2025-02-01T00:00:00.000Z', months: 14 });
  });

  it('gives no months, from = to = the current month, when data is available only from this month or later', () => {
    expect(period('2025-07-15T00:00:00Z', '2025-07-01T00:00:00Z')).toEqual({ from: '2025-07-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 0 });
    expect(period('2025-07-15T00:00:00Z', '2025-06-02T00:00:00Z').months).toBe(0);
    expect(period('2025-07-15T00:00:00Z', '2026-01-01T00:00:00Z')).toEqual({ from: '2025-07-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 0 });
  });

  it('gives one month when data is available from exactly the start of last month', () => {
    expect(period('2025-07-15T00:00:00Z', '2025-06-01T00:00:00Z')).toEqual({ from: '2025-06-01T00:00:00.000Z', to: '2025-07-01T00:00:00.000Z', months: 1 });
  });

  it('gives no months with maxMonths 0', () => {
    expect(period('2025-07-15T00:00:00Z', FAR_BACK, 0).months).toBe(0);
  });
});

describe('dataPeriod across leap years', () => {
  it('gives 2023-03-01..2024-03-01 at the first instant of March 2024 (12 months, including 29 days of February)', () => {
    expect(period('2024-03-01T00:00:00Z', FAR_BACK)).toEqual({ from: '2023-03-01T00:00:00.000Z', to: '2024-03-01T00:00:00.000Z', months: 12 });
  });

  it('gives 2023-02-01..2024-02-01 on 29 February 2024', () => {
    expect(period('2024-02-29T23:59:59Z', FAR_BACK)).toEqual({ from: '2023-02-01T00:00:00.000Z', to: '2024-02-01T00:00:00.000Z', months: 12 });
  });

  it('starts at 2024-03-01 when data is available from 2024-02-29T12:00Z, so no month is served yet in March 2024', () => {
    expect(firstWholeMonthOnOrAfter(at('2024-02-29T12:00:00Z')).toISOString()).toBe('2024-03-01T00:00:00.000Z');
    expect(period('2024-03-01T00:00:00Z', '2024-02-29T12:00:00Z')).toEqual({ from: '2024-03-01T00:00:00.000Z', to: '2024-03-01T00:00:00.000Z', months: 0 });
    expect(period('2024-03-31T23:59:59Z', '2024-02-29T12:00:00Z').months).toBe(0);
  });

  it('serves March 2024 alone from April 2024 when data is available from 2024-02-29T12:00Z', () => {
    expect(period('2024-04-01T00:00:00Z', '2024-02-29T12:00:00Z')).toEqual({ from: '2024-03-01T00:00:00.000Z', to: '2024-04-01T00:00:00.000Z', months: 1 });
  });
});

describe('defaultDataAvailableFrom', () => {
  it('is the start of the month maxMonths before the current one', () => {
    expect(defaultDataAvailableFrom(at('2025-07-15T10:00:00Z')).toISOString()).toBe('2024-07-01T00:00:00.000Z');
    expect(defaultDataAvailableFrom(at('2024-02-29T10:00:00Z'), 1).toISOString()).toBe('2024-01-01T00:00:00.000Z');
  });

  it('gives a full 12-month period when used for a new permission', () => {
    const now = at('2025-07-15T10:00:00Z');
    expect(dataPeriod(now, defaultDataAvailableFrom(now)).months).toBe(12);
  });
});

describe('describeDataPeriod', () => {
  const describeAt = (now: string, availableFrom: Date | string, maxMonths?: number) =>
    describeDataPeriod(dataPeriod(at(now), typeof availableFrom === 'string' ? at(availableFrom) : availableFrom, maxMonths));

  it('names the first and last months served and counts them', () => {
    expect(describeAt('2025-07-15T00:00:00Z', FAR_BACK)).toBe('July 2024 to June 2025 (12 whole months)');
  });

  it('names the single month served in the singular', () => {
    expect(describeAt('2025-07-15T00:00:00Z', '2025-06-01T00:00:00Z')).toBe('June 2025 (1 whole month)');
  });

  it('says no complete month yet when none is served', () => {
    expect(describeAt('2024-03-10T00:00:00Z', '2024-02-29T12:00:00Z')).toBe('no complete month yet');
  });

  it('names months in UTC across a year boundary', () => {
    expect(describeAt('2025-02-01T00:00:00Z', '2024-11-15T00:00:00Z')).toBe('December 2024 to January 2025 (2 whole months)');
  });
});

describe('permissionExpiry: the same instant, N whole months later (UTC)', () => {
  const expiry = (grantedAt: string, durationMonths: number) => permissionExpiry(at(grantedAt), { durationMonths }).toISOString();

  it('ends a 12-month permission granted 2025-07-15T10:00Z at 2026-07-15T10:00Z', () => {
    expect(expiry('2025-07-15T10:00:00Z', 12)).toBe('2026-07-15T10:00:00.000Z');
  });

  it('ends a 12-month permission granted on 29 February 2024 on 28 February 2025 at the same time', () => {
    expect(expiry('2024-02-29T13:45:30.250Z', 12)).toBe('2025-02-28T13:45:30.250Z');
  });

  it('ends a 48-month permission granted on 29 February 2024 on 29 February 2028', () => {
    expect(expiry('2024-02-29T00:00:00Z', 48)).toBe('2028-02-29T00:00:00.000Z');
  });

  it('clamps to the last day of a shorter month (31 January + 1 month is 28 February)', () => {
    expect(expiry('2025-01-31T08:00:00Z', 1)).toBe('2025-02-28T08:00:00.000Z');
    expect(expiry('2023-08-31T08:00:00Z', 6)).toBe('2024-02-29T08:00:00.000Z');
  });

  it('does not alter the grant date it is given', () => {
    const grantedAt = at('2025-07-15T10:00:00Z');
    permissionExpiry(grantedAt, { durationMonths: 12 });
    expect(grantedAt.toISOString()).toBe('2025-07-15T10:00:00.000Z');
  });
});
