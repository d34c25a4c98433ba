// Calendar arithmetic for the reference APIs, all in UTC.
//
// Data rule (Perseus advisory group, CAP guide): data is served only for whole calendar months
// (UTC) up to the end of "last month": a month is served only if all its half-hours are inside
// the permitted window, so no finer resolution leaks by moving the window. `from` is the first
// day of a month (inclusive) and `to` the first day of a month (exclusive).

export const HALF_HOUR_MS = 30 * 60 * 1000;

export function startOfMonth(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
}

export function addMonths(d: Date, n: number): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + n, 1));
}

export function isFirstOfMonth(d: Date): boolean {
  return startOfMonth(d).getTime() === d.getTime();
}

/** First days of the months in [from, to). */
export function monthsIn(from: Date, to: Date): Date[] {
  const months: Date[] = [];
  for (let m = startOfMonth(from); m < to; m = addMonths(m, 1)) months.push(m);
  return months;
}

/** Number of half-hours in [from, to) (UTC has no daylight saving: 48 a day). */
export function halfHoursIn(from: Date, to: Date): number {
  return Math.max(0, Math.round((to.getTime() - from.getTime()) / HALF_HOUR_MS));
}

/** 2025-07-01T00:00:00Z: ISO 8601 UTC to the second, the form used in every response. */
export function isoSeconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** 2025-07 */
export function yearMonth(d: Date): string {
  return d.toISOString().slice(0, 7);
}

/** `YYYY-MM` -> the first instant of that month (UTC); undefined when malformed. */
export function parseYearMonth(value: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})$/.exec(value);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 12) return undefined;
  return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1));
}

/** A request whose range breaks the data rules: answered 400 with this message. */
export class MonthRangeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MonthRangeError';
  }
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:\d{2})$/;

/** `2025-07-01` or `2025-07-01T00:00:00Z`, which must be the first instant of a month (UTC). */
export function parseMonthBoundary(value: string, name: 'from' | 'to'): Date {
  if (!DAY.test(value) && !INSTANT.test(value)) {
    throw new MonthRangeError(`${name} must be the first day of a month, as YYYY-MM-DD or YYYY-MM-DDT00:00:00Z (got ${JSON.stringify(value)})`);
  }
  const date = new Date(DAY.test(value) ? `${value}T00:00:00Z` : value);
  if (Number.isNaN(date.getTime())) throw new MonthRangeError(`${name} is not a valid date (got ${JSON.stringify(value)})`);
  if (!isFirstOfMonth(date)) {
    throw new MonthRangeError(`${name} must be the first day of a month at 00:00 UTC: only whole months are served (got ${JSON.stringify(value)})`);
  }
  return date;
}

const MONTH_NAME = new Intl.DateTimeFormat('en-GB', { month: 'long', year: 'numeric', timeZone: 'UTC' });

/**
 * The whole months asked for, checked against the window that may be served.
 * @param query the raw `from` and `to` query values (either may be absent: then `defaults` applies)
 * @param allowed the window that may be served: [from, to), both first days of months
 */
export function monthRange(query: { from?: string; to?: string }, allowed: { from: Date; to: Date }, defaults: { from: Date; to: Date } = allowed): { from: Date; to: Date } {
  const from = query.from === undefined ? defaults.from : parseMonthBoundary(query.from, 'from');
  const to = query.to === undefined ? defaults.to : parseMonthBoundary(query.to, 'to');
  if (from >= to) throw new MonthRangeError('from must be before to (from inclusive, to exclusive)');
  if (allowed.from >= allowed.to) throw new MonthRangeError('no whole month may be served under this permission yet');
  const window = `${MONTH_NAME.format(allowed.from)} to ${MONTH_NAME.format(addMonths(allowed.to, -1))} (from=${isoSeconds(allowed.from).slice(0, 10)}, to=${isoSeconds(allowed.to).slice(0, 10)})`;
  if (from < allowed.from || to > allowed.to) {
    throw new MonthRangeError(`only whole months from ${window} may be served under this permission`);
  }
  return { from, to };
}
