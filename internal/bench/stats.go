package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the nearest-rank method:
// the smallest sample that is at least p percent of the samples, so the result is always a
// measured value, never an interpolation. It returns 0 for no samples; p <= 0 gives the minimum.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Latencies summarizes request latencies, in milliseconds.
type Latencies struct {
	P50 float64 `json:"p50Ms"`
	P90 float64 `json:"p90Ms"`
	P99 float64 `json:"p99Ms"`
	Max float64 `json:"maxMs"`
}

// Summarize sorts samples in place and returns their percentiles.
func Summarize(samples []time.Duration) Latencies {
	slices.Sort(samples)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Latencies{
		P50: ms(Percentile(samples, 50)),
		P90: ms(Percentile(samples, 90)),
		P99: ms(Percentile(samples, 99)),
		Max: ms(Percentile(samples, 100)),
	}
}

// ParseCounts parses a comma-separated list of positive counts, such as "1,4,16,64".
func ParseCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive whole number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
