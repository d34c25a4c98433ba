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

/** The longest an open-loop warm-up goes on, past `warmupSeconds`, to use every sampled token once. */
export const WARM_SAMPLE_MAX_MS = 30_000;

/**
 * The longest a pass's warm-up can last: `warmupSeconds`, or for an open-loop pass a closed-loop
 * run (up to WARM_SAMPLE_MAX_MS longer) and then a ramp of `warmupSeconds` (see bench/load.ts).
 */
export function longestWarmupMs(warmupSeconds: number, openLoop: boolean): number {
  return openLoop ? warmupSeconds * 2000 + WARM_SAMPLE_MAX_MS : warmupSeconds * 1000;
}
