package methods

import "time"

// Clock schedules a call's timeouts. Tests replace it to fire timeouts without waiting.
type Clock interface {
	// AfterFunc calls f in its own goroutine once d has passed; stop cancels it and reports
	// whether it did so before f ran.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}
