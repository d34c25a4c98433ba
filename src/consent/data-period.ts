/**
 * The data period: which whole calendar months (UTC) a data provider may serve under a
 * permission. The advisory group agreed that data is served only for whole months up to the end
 * of "last month", so that no finer resolution can be read by moving the window.
 */
export interface DataPeriod {
  /** First day of the first month served, 00:00 UTC (inclusive). */
  from: Date;
  /** First day of the current month, 00:00 UTC (exclusive). */
  to: Date;
  /** Number of whole months in the period (0 when none is complete yet). */
  months: number;
}

function startOfMonth(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
}

function addMonths(d: Date, n: number): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + n, 1));
}

/** The first instant of the first whole month that starts on or after `d`. */
export function firstWholeMonthOnOrAfter(d: Date): Date {
  const start = startOfMonth(d);
  return start.getTime() === d.getTime() ? start : addMonths(start, 1);
}

/**
 * @param now the moment of the question
 * @param dataAvailableFrom earliest instant the permission lets data be read from
 * @param maxMonths how far back a data provider may go at most (12 by default, per license)
 */
export function dataPeriod(now: Date, dataAvailableFrom: Date, maxMonths = 12): DataPeriod {
  const to = startOfMonth(now);
  const earliest = addMonths(to, -maxMonths);
  const fromAvailable = firstWholeMonthOnOrAfter(dataAvailableFrom);
  const from = fromAvailable > earliest ? fromAvailable : earliest;
  if (from >= to) return { from: to, to, months: 0 };
  const months = (to.getUTCFullYear() - from.getUTCFullYear()) * 12 + (to.getUTCMonth() - from.getUTCMonth());
  return { from, to, months };
}

/** The default `dataAvailableFrom` of a new permission: the start of the month `maxMonths` back. */
export function defaultDataAvailableFrom(now: Date, maxMonths = 12): Date {
  return addMonths(startOfMonth(now), -maxMonths);
}

const MONTH = new Intl.DateTimeFormat('en-GB', { month: 'long', year: 'numeric', timeZone: 'UTC' });

/** "April 2026 to March 2027 (12 whole months)" for the consent page. */
export function describeDataPeriod(period: DataPeriod): string {
  if (period.months === 0) return 'no complete month yet';
  const last = addMonths(period.to, -1);
  const span = period.months === 1 ? MONTH.format(period.from) : `${MONTH.format(period.from)} to ${MONTH.format(last)}`;
  return `${span} (${period.months} whole month${period.months === 1 ? '' : 's'})`;
}
