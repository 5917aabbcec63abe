package kql

import (
	"testing"
	"time"
)

func TestParseTimespan(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string][2]time.Time{
		"PT1H":       {now.Add(-time.Hour), now},
		"P7D":        {now.Add(-7 * 24 * time.Hour), now},
		"P1DT12H30M": {now.Add(-36*time.Hour - 30*time.Minute), now},
		"PT0.5S":     {now.Add(-500 * time.Millisecond), now},
		"2025-03-04T10:00:00Z/2025-03-04T11:00:00Z": {now.Add(-2 * time.Hour), now.Add(-time.Hour)},
		"2025-03-04T10:00:00Z/PT30M":                {now.Add(-2 * time.Hour), now.Add(-90 * time.Minute)},
		"PT30M/2025-03-04T10:00:00Z":                {now.Add(-150 * time.Minute), now.Add(-2 * time.Hour)},
	} {
		from, to, err := ParseTimespan(in, now)
		if err != nil || !from.Equal(want[0]) || !to.Equal(want[1]) {
			t.Errorf("%s: %v..%v %v, want %v..%v", in, from, to, err, want[0], want[1])
		}
	}
	for _, bad := range []string{"1h", "P", "PT", "P1M", "PT1D", "P1Y", "PTxH", "2025-03-04/2025-03-05", "a/b", "P9999D"} {
		if _, _, err := ParseTimespan(bad, now); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
