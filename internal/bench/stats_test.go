package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func ms(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"no samples", nil, 50, 0},
		{"one sample p50", ms(7), 50, 7 * time.Millisecond},
		{"one sample p99", ms(7), 99, 7 * time.Millisecond},
		{"two samples p50 is the lower", ms(1, 2), 50, 1 * time.Millisecond},
		{"two samples p51 is the upper", ms(1, 2), 51, 2 * time.Millisecond},
		{"four samples p50", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"four samples p75", ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{"four samples p90", ms(1, 2, 3, 4), 90, 4 * time.Millisecond},
		{"1..100 p50", hundred, 50, 50 * time.Millisecond},
		{"1..100 p90", hundred, 90, 90 * time.Millisecond},
		{"1..100 p99", hundred, 99, 99 * time.Millisecond},
		{"1..100 p99.9", hundred, 99.9, 100 * time.Millisecond},
		{"1..100 p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"p0 is the min", hundred, 0, 1 * time.Millisecond},
		{"p above 100 is the max", hundred, 150, 100 * time.Millisecond},
		{"outlier only moves the top", ms(1, 1, 1, 1, 1, 1, 1, 1, 1, 1000), 90, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

// TestPercentileIsASample checks the nearest-rank property on random data: the result is a
// sample, at least p% of the samples are <= it, and fewer than p% are < it.
func TestPercentileIsASample(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := 1 + rng.IntN(500)
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(rng.IntN(1000)) * time.Microsecond
		}
		slices.Sort(s)
		for _, p := range []float64{1, 50, 90, 99, 100} {
			got := Percentile(s, p)
			if !slices.Contains(s, got) {
				t.Fatalf("n=%d p%v: %v is not a sample", n, p, got)
			}
			le, lt := 0, 0
			for _, v := range s {
				if v <= got {
					le++
				}
				if v < got {
					lt++
				}
			}
			if float64(le) < p/100*float64(n) || float64(lt) >= p/100*float64(n) {
				t.Fatalf("n=%d p%v = %v: %d samples <= it, %d < it", n, p, got, le, lt)
			}
		}
	}
}

func TestSummarizeSortsAndConvertsToMilliseconds(t *testing.T) {
	samples := []time.Duration{
		3 * time.Millisecond, 1500 * time.Microsecond, 10 * time.Millisecond, 2 * time.Millisecond,
	}
	got := Summarize(samples)
	want := Latencies{P50: 2, P90: 10, P99: 10, Max: 10}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Summarize (-want +got):\n%s", diff)
	}
	if !slices.IsSorted(samples) {
		t.Errorf("samples not sorted in place: %v", samples)
	}
	if got := Summarize(nil); got != (Latencies{}) {
		t.Errorf("Summarize(nil) = %+v, want zeros", got)
	}
}

func TestParseCounts(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"16", []int{16}, false},
		{"1,4,16,64", []int{1, 4, 16, 64}, false},
		{" 1, 4 ", []int{1, 4}, false},
		{"", nil, true},
		{"0", nil, true},
		{"-2", nil, true},
		{"4,,8", nil, true},
		{"four", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCounts(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseCounts(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCounts(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
