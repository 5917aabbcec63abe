package kql

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTimespan reads the Log Analytics query API's timespan parameter: an ISO 8601 duration
// ending now (PT1H, P7D, P1DT12H), an interval start/end, start/duration or duration/end.
func ParseTimespan(s string, now time.Time) (from, to time.Time, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, time.Time{}, nil
	}
	a, b, interval := strings.Cut(s, "/")
	if !interval {
		d, err := parseISODuration(s)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		return now.Add(-d), now, nil
	}
	at := func(x string) (time.Time, bool) {
		t, err := time.Parse(time.RFC3339Nano, x)
		return t, err == nil
	}
	switch {
	case strings.HasPrefix(a, "P"):
		d, err := parseISODuration(a)
		end, ok := at(b)
		if err != nil || !ok {
			return time.Time{}, time.Time{}, fmt.Errorf("timespan %q is not duration/end", s)
		}
		return end.Add(-d), end, nil
	case strings.HasPrefix(b, "P"):
		d, err := parseISODuration(b)
		start, ok := at(a)
		if err != nil || !ok {
			return time.Time{}, time.Time{}, fmt.Errorf("timespan %q is not start/duration", s)
		}
		return start, start.Add(d), nil
	}
	start, ok1 := at(a)
	end, ok2 := at(b)
	if !ok1 || !ok2 || end.Before(start) {
		return time.Time{}, time.Time{}, fmt.Errorf("timespan %q is not start/end in RFC 3339", s)
	}
	return start, end, nil
}

// parseISODuration reads PnDTnHnMnS (weeks and days, hours, minutes, seconds; no months or
// years, whose length varies).
func parseISODuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("timespan %q is not an ISO 8601 duration such as PT1H or P7D", s)
	if !strings.HasPrefix(s, "P") || len(s) < 3 {
		return 0, bad
	}
	rest := s[1:]
	var d float64
	inTime := false
	for rest != "" {
		if rest[0] == 'T' {
			inTime = true
			rest = rest[1:]
			continue
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, bad
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, bad
		}
		unit := rest[i]
		rest = rest[i+1:]
		switch {
		case !inTime && unit == 'W':
			d += n * 7 * 24 * 3600e9
		case !inTime && unit == 'D':
			d += n * 24 * 3600e9
		case inTime && unit == 'H':
			d += n * 3600e9
		case inTime && unit == 'M':
			d += n * 60e9
		case inTime && unit == 'S':
			d += n * 1e9
		default:
			return 0, bad
		}
	}
	if d <= 0 || d > 400*24*3600e9 {
		return 0, bad
	}
	return time.Duration(d), nil
}
