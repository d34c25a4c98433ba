import { describe, expect, it } from 'vitest';

import { longestWarmupMs, nextStartMs, rateAt, WARM_SAMPLE_MAX_MS } from '../../bench/lib/schedule.ts';

/** Start times of a whole open-loop pass, in ms from its start, up to `untilMs`. */
function starts(rate: number, rampMs: number, untilMs: number): number[] {
  const out: number[] = [];
  for (let t = 0; t < untilMs; t = nextStartMs(t, rate, rampMs)) out.push(t);
  return out;
}

describe('the open-loop schedule', () => {
  it('starts at a tenth of the rate and reaches the full rate at the end of the ramp', () => {
    expect(rateAt(0, 10_000, 2000)).toBe(1000);
    expect(rateAt(1000, 10_000, 2000)).toBeCloseTo(5500, 6);
    expect(rateAt(2000, 10_000, 2000)).toBe(10_000);
    expect(rateAt(9000, 10_000, 2000)).toBe(10_000);
  });

  it('sends what the ramp integrates to during it, then exactly the rate', () => {
    const all = starts(10_000, 2000, 5000);
    const inRamp = all.filter((t) => t < 2000).length;
    // ∫ rate·(0.1 + 0.9·t/T) dt over T = rate·T·0.55 = 11,000 requests
    expect(inRamp).toBeGreaterThan(10_900);
    expect(inRamp).toBeLessThan(11_100);
    const after = all.filter((t) => t >= 2000);
    expect(after.length).toBeGreaterThanOrEqual(29_999);
    expect(after.length).toBeLessThanOrEqual(30_001);
    for (let i = 1; i < after.length; i++) expect(after[i]! - after[i - 1]!).toBeCloseTo(0.1, 9);
  });

  it('is steady from the first request when there is no ramp', () => {
    const all = starts(500, 0, 1000);
    expect(all).toHaveLength(500);
    expect(all[1]).toBeCloseTo(2, 9);
  });
});

describe('how long a pass may warm up', () => {
  it('is the warm-up of a closed-loop pass, and twice it plus the sample allowance for an open-loop pass', () => {
    expect(longestWarmupMs(2, false)).toBe(2000);
    expect(longestWarmupMs(2, true)).toBe(4000 + WARM_SAMPLE_MAX_MS);
  });
});
