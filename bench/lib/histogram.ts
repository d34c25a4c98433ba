/**
 * A log-linear latency histogram in the HdrHistogram style: exact below 128 µs, then 64 linear
 * sub-buckets per power of two (under 1.6 % relative error), any range up to hours, fixed memory,
 * mergeable across processes (counts are plain numbers).
 */
const SUB_BITS = 6;
const SUB = 1 << SUB_BITS; // 64
const LINEAR = SUB * 2; // values below 128 are exact
const MAX_EXP = 42; // ~ 4.4e12 µs

function indexOf(value: number): number {
  const v = Math.max(0, Math.floor(value));
  if (v < LINEAR) return v;
  const e = Math.min(MAX_EXP, Math.floor(Math.log2(v)));
  const m = Math.floor(v / 2 ** (e - SUB_BITS)); // 64..127
  return LINEAR + (e - SUB_BITS - 1) * SUB + (m - SUB);
}

function lowerBoundOf(index: number): number {
  if (index < LINEAR) return index;
  const e = Math.floor((index - LINEAR) / SUB) + SUB_BITS + 1;
  const m = ((index - LINEAR) % SUB) + SUB;
  return m * 2 ** (e - SUB_BITS);
}

function widthOf(index: number): number {
  if (index < LINEAR) return 1;
  const e = Math.floor((index - LINEAR) / SUB) + SUB_BITS + 1;
  return 2 ** (e - SUB_BITS);
}

export interface LatencySummary {
  count: number;
  /** Milliseconds. */
  mean: number;
  min: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
}

export class Histogram {
  readonly counts: number[] = new Array(LINEAR + (MAX_EXP - SUB_BITS) * SUB).fill(0);
  count = 0;
  sum = 0;
  min = Infinity;
  max = 0;

  /** Records one value in microseconds. */
  record(us: number): void {
    this.counts[indexOf(us)] += 1;
    this.count += 1;
    this.sum += us;
    if (us < this.min) this.min = us;
    if (us > this.max) this.max = us;
  }

  merge(other: Pick<Histogram, 'counts' | 'count' | 'sum' | 'min' | 'max'>): void {
    for (let i = 0; i < other.counts.length; i++) this.counts[i] += other.counts[i];
    this.count += other.count;
    this.sum += other.sum;
    this.min = Math.min(this.min, other.min);
    this.max = Math.max(this.max, other.max);
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = 0;
  }

  /** The value (µs) at quantile q in [0, 1]: the middle of its bucket, clamped to min..max. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, lowerBoundOf(i) + (widthOf(i) - 1) / 2));
    }
    return this.max;
  }

  /** Everything in milliseconds, rounded to 0.01 ms. */
  summary(): LatencySummary {
    const ms = (us: number) => Math.round(us / 10) / 100;
    return {
      count: this.count,
      mean: ms(this.count ? this.sum / this.count : 0),
      min: ms(this.count ? this.min : 0),
      p50: ms(this.quantile(0.5)),
      p90: ms(this.quantile(0.9)),
      p95: ms(this.quantile(0.95)),
      p99: ms(this.quantile(0.99)),
      p999: ms(this.quantile(0.999)),
      max: ms(this.max),
    };
  }
}
