// Package blobtest helps test code that keeps files in the built-in blob store: a store on a
// real engine with the hub's names, and a settable clock for the store's TTLs. Only tests
// import it.
package blobtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/engine"
)

// Clock is a settable clock for blob.LocalConfig.Now and the like. It starts at the real time
// and moves only when the test advances it.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock set to the real time.
func NewClock() *Clock {
	c := &Clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Open opens the blob index and a local store on eng, with cfg's Engine and Index filled in and
// its Account, Container and Host, when empty, the hub's ("hub", "fileupload", "hub.test"). The
// store closes when the test ends.
func Open(tb testing.TB, eng *engine.Engine, cfg blob.LocalConfig) (*blob.Local, *blob.Index) {
	tb.Helper()
	ctx := context.Background()
	ix, err := blob.OpenIndex(ctx, eng)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Engine, cfg.Index = eng, ix
	if cfg.Account == "" {
		cfg.Account = "hub"
	}
	if cfg.Container == "" {
		cfg.Container = "fileupload"
	}
	if cfg.Host == "" {
		cfg.Host = "hub.test"
	}
	st, err := blob.OpenLocal(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	return st, ix
}
