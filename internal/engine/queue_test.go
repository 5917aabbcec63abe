package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
)

func TestEngineQueueCapAndDelete(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, eng *engine.Engine) {
		ctx := context.Background()
		q, err := eng.Queue(ctx, engine.QueueConfig{Name: "Q", Prefix: "q", MaxPerKey: 3, MaxAge: time.Hour, NotifyKind: "c2d"})
		if err != nil {
			t.Fatal(err)
		}
		mb := eng.NewMailbox(16)
		sub, err := mb.Subscribe(engine.DeviceSubject("dev.1*", "", "c2d"))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		var seqs []uint64
		for i := 0; i < 3; i++ {
			seq, err := q.Append(ctx, "dev.1*", []byte(fmt.Sprint(i)), time.Minute)
			if err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
			seqs = append(seqs, seq)
		}
		if _, err := q.Append(ctx, "dev.1*", []byte("x"), 0); !errors.Is(err, engine.ErrLimit) {
			t.Fatalf("fourth append: got %v, want ErrLimit", err)
		}
		if _, err := q.Append(ctx, "other", []byte("y"), 0); err != nil {
			t.Fatalf("another key is not affected: %v", err)
		}
		for i := 0; i < 3; i++ {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			in, err := mb.Next(ctx)
			cancel()
			if err != nil {
				t.Fatalf("notification %d: %v", i, err)
			}
			seq, prev := engine.AnnouncedSeq(in)
			wantPrev := uint64(0)
			if i > 0 {
				wantPrev = seqs[i-1]
			}
			if in.Subject != engine.DeviceSubject("dev.1*", "", "c2d") || seq != seqs[i] || prev != wantPrev {
				t.Fatalf("notified on %s of %d after %d, want %d after %d", in.Subject, seq, prev, seqs[i], wantPrev)
			}
		}
		if n, err := q.Len(ctx, "dev.1*"); err != nil || n != 3 {
			t.Fatalf("len = %d, %v; want 3", n, err)
		}
		msgs, err := q.List(ctx, "dev.1*", 0, 10)
		if err != nil || len(msgs) != 3 || string(msgs[1].Data) != "1" || msgs[1].Seq != seqs[1] {
			t.Fatalf("list: %+v %v", msgs, err)
		}
		if err := q.Delete(ctx, seqs[1]); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if err := q.Delete(ctx, seqs[1]); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("second delete: got %v, want ErrNotFound", err)
		}
		if err := q.Delete(ctx, 1_000_000); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("delete beyond the end: got %v, want ErrNotFound", err)
		}
		if _, err := q.Get(ctx, "dev.1*", seqs[1]); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("get deleted: %v", err)
		}
		if _, err := q.Get(ctx, "other", seqs[0]); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("get another key's message: %v", err)
		}
		if _, err := q.Append(ctx, "dev.1*", []byte("3"), 0); err != nil {
			t.Fatalf("append after delete: %v", err)
		}
		if err := q.Purge(ctx, "dev.1*"); err != nil {
			t.Fatal(err)
		}
		if n, _ := q.Len(ctx, "dev.1*"); n != 0 {
			t.Fatalf("len after purge = %d", n)
		}
		if n, _ := q.Total(ctx); n != 1 {
			t.Fatalf("total = %d, want 1", n)
		}
	})
}

func TestEngineTimersFireOnceAtTheEarliestTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	eng := enginetest.Start(t)
	tm, err := eng.Timers(ctx, engine.TimersConfig{Name: "T", Prefix: "t"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Concurrent arms: the earliest wins.
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tm.Arm(ctx, "dev.x", start.Add(time.Duration(600+i*200)*time.Millisecond)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	at, err := tm.Arm(ctx, "dev.x", start.Add(time.Hour)) // later: no change
	if err != nil || !at.Equal(start.Add(600*time.Millisecond).UTC()) {
		t.Fatalf("arm later: %s %v; want the earliest time kept", at, err)
	}
	if _, err := tm.Arm(ctx, "past", start.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	feed, err := tm.Feed()
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Stop()
	got := map[string]time.Duration{}
	for len(got) < 2 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		f, err := feed.Next(cctx)
		cancel()
		if err != nil {
			t.Fatalf("next: %v (got %v)", err, got)
		}
		if _, dup := got[f.Key]; dup {
			t.Fatalf("%s fired twice", f.Key)
		}
		got[f.Key] = time.Since(start)
		if err := f.Done(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := got["dev.x"]; d < 550*time.Millisecond || d > 3*time.Second {
		t.Fatalf("dev.x fired after %s, want about 600ms", d)
	}
	cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if f, err := feed.Next(cctx); err == nil {
		t.Fatalf("unexpected extra timer %s", f.Key)
	}
}

func TestEngineWorkLockAndSettleFromAnotherConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ext := enginetest.StartExternal(t)
	a, b := ext.Connect(t), ext.Connect(t)
	st, err := a.Stream(ctx, engine.StreamConfig{Name: "FB", Subjects: []string{"fb.>"}, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.Work(ctx, engine.WorkConfig{Name: "r", AckWait: time.Second, MaxDeliver: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := a.Publish(ctx, "fb.d", []byte(fmt.Sprint(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := w.Take(ctx, 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("take: %d %v", len(got), err)
	}
	if more, _ := w.Take(ctx, 10); len(more) != 1 || string(more[0].Data) != "2" {
		t.Fatalf("the locked messages were handed out again: %+v", more)
	}
	// Settled from the other node's connection.
	if err := b.Settle(ctx, got[0].Token, engine.Done); err != nil {
		t.Fatal(err)
	}
	if err := b.Settle(ctx, got[1].Token, engine.Release); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		again, err := w.Take(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range again {
			if string(m.Data) == "0" {
				t.Fatal("a settled message came back")
			}
			if string(m.Data) == "1" {
				if m.Delivered != 2 {
					t.Fatalf("released message delivered %d times", m.Delivered)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the released message did not come back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEngineDeleteAsync(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	eng := enginetest.Start(t)
	b, err := eng.KV(ctx, engine.BucketConfig{Name: "da"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "k.1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := eng.DeleteAsync(b, "k.1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := b.Get(ctx, "k.1"); errors.Is(err, engine.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key still there")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.Create(ctx, "k.1", []byte("y")); err != nil {
		t.Fatalf("create after an async delete: %v", err)
	}
}
