/**
 * The schedule of an open-loop pass (bench/load.ts): the rate ramps linearly from a tenth of
 * `rate` to `rate` over `rampMs`, then stays there. Times are milliseconds from the start.
 */
export function rateAt(elapsedMs: number, rate: number, rampMs: number): number {
  return elapsedMs >= rampMs ? rate : rate * (0.1 + (0.9 * elapsedMs) / rampMs);
}

/** The start of the request after one started at `elapsedMs`. */
export function nextStartMs(elapsedMs: number, rate: number, rampMs: number): number {
  return elapsedMs + 1000 / rateAt(elapsedMs, rate, rampMs);
}
