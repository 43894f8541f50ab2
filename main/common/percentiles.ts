// Percentiles for the latency/TTFT windows.
//
// Method: linear interpolation between closest ranks on the sorted sample, the "type 7" estimator
// (numpy.percentile's default, R's default, and what the seed used):
//   h = (n - 1) * q,  value = x[floor(h)] + (h - floor(h)) * (x[floor(h)+1] - x[floor(h)])
// For 1..100: p50 = 50.5, p95 = 95.05, p99 = 99.01. It is monotone in q, so p50 ≤ p95 ≤ p99 holds
// for any sample; an empty sample gives 0 for every percentile (the JSON never carries NaN/null).

/** Type-7 percentile of an already ascending-sorted array; q in [0, 1]. */
export function percentileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  if (n === 1) return sorted[0];
  const qq = Math.min(1, Math.max(0, q));
  const h = (n - 1) * qq;
  const lo = Math.floor(h);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

export interface PercentileSummary {
  p50: number;
  p95: number;
  p99: number;
}

/** p50/p95/p99 of an unsorted sample (non-finite values are ignored). */
export function summarize(values: readonly number[]): PercentileSummary {
  // Float64Array sorts numerically and much faster than Array#sort with a comparator.
  const sorted = Float64Array.from(values.filter((v) => Number.isFinite(v))).sort();
  return {
    p50: percentileSorted(sorted, 0.5),
    p95: percentileSorted(sorted, 0.95),
    p99: percentileSorted(sorted, 0.99),
  };
}
