package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of sorted, or 0 when it is empty:
// the smallest value with at least p% of the values at or below it. Nearest-rank never interpolates,
// so the result is always a value that was measured.
func percentile[T int64 | float64 | time.Duration](sorted []T, p float64) T {
	if len(sorted) == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// summary is a sample's median and spread.
type summary struct {
	N                       int
	Min, P10, P50, P90, Max time.Duration
	P99                     time.Duration
}

func summarize(xs []time.Duration) summary {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return summary{}
	}
	return summary{
		N:   len(s),
		Min: s[0], Max: s[len(s)-1],
		P10: percentile(s, 10), P50: percentile(s, 50), P90: percentile(s, 90), P99: percentile(s, 99),
	}
}

// rateSummary is the median and range of per-window rates.
type rateSummary struct {
	Overall       float64 // all completions ÷ whole measured time
	Median        float64 // median of the per-window rates
	Min, Max      float64
	Windows       int
	WindowSeconds float64
}

// rates turns per-window completion counts into per-second rates and summarises them.
func rates(counts []int64, window time.Duration, total int64, elapsed time.Duration) rateSummary {
	r := rateSummary{Windows: len(counts), WindowSeconds: window.Seconds()}
	if elapsed > 0 {
		r.Overall = float64(total) / elapsed.Seconds()
	}
	if len(counts) == 0 || window <= 0 {
		return r
	}
	fs := make([]float64, len(counts))
	for i, c := range counts {
		fs[i] = float64(c) / window.Seconds()
	}
	slices.Sort(fs)
	r.Min, r.Max, r.Median = fs[0], fs[len(fs)-1], percentile(fs, 50)
	return r
}

// ratio is a/b, or NaN when b is zero (rendered as "–").
func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}
