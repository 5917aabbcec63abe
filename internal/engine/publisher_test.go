package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
)

func TestPublisherStoresInOrderAndReportsSequences(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, eng *engine.Engine) {
		ctx := context.Background()
		st, err := eng.Stream(ctx, engine.StreamConfig{Name: "P", Subjects: []string{"p.>"}})
		if err != nil {
			t.Fatal(err)
		}
		pub, err := eng.NewPublisher(engine.PublisherConfig{MaxInFlight: 16})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close(ctx)
		const n = 500
		pubs := make([]*engine.Pub, n)
		for i := range pubs {
			if pubs[i], err = pub.Publish("p.a", []byte(fmt.Sprint(i))); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
		for i, p := range pubs {
			seq, err := p.Wait(ctx)
			if err != nil || seq != uint64(i+1) {
				t.Fatalf("write %d: seq %d, err %v; want seq %d", i, seq, err, i+1)
			}
		}
		m, err := st.Get(ctx, 250)
		if err != nil || string(m.Data) != "249" {
			t.Fatalf("message 250: %q, %v", m.Data, err)
		}
		if got := pub.InFlight(); got != 0 {
			t.Fatalf("in flight after all acks: %d", got)
		}
	})
}

func TestPublisherErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	eng := enginetest.Start(t)
	if _, err := eng.Stream(ctx, engine.StreamConfig{Name: "Q", Subjects: []string{"q.>"}}); err != nil {
		t.Fatal(err)
	}

	t.Run("no stream", func(t *testing.T) {
		pub, err := eng.NewPublisher(engine.PublisherConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close(ctx)
		p, err := pub.Publish("nowhere.x", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Wait(ctx); !errors.Is(err, engine.ErrNoResponders) {
			t.Fatalf("got %v, want ErrNoResponders", err)
		}
	})

	t.Run("ack timeout", func(t *testing.T) {
		// A plain subscriber takes the message and never answers: no acknowledgement comes.
		sub, err := eng.Subscribe("silent.x", func(engine.Inbound) {})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		pub, err := eng.NewPublisher(engine.PublisherConfig{AckTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close(ctx)
		p, err := pub.Publish("silent.x", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := p.Wait(wctx); !errors.Is(err, engine.ErrAckTimeout) {
			t.Fatalf("got %v, want ErrAckTimeout", err)
		}
		if pub.InFlight() != 0 {
			t.Fatal("timed-out write still counted in flight")
		}
	})

	t.Run("busy", func(t *testing.T) {
		sub, err := eng.Subscribe("silent.y", func(engine.Inbound) {})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		pub, err := eng.NewPublisher(engine.PublisherConfig{MaxInFlight: 2, StallWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			// Nothing will acknowledge the two writes: Close gives up when its ctx ends.
			cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			pub.Close(cctx)
		}()
		for i := 0; i < 2; i++ {
			if _, err := pub.Publish("silent.y", nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pub.Publish("silent.y", nil); !errors.Is(err, engine.ErrBusy) {
			t.Fatalf("third write into a window of 2: got %v, want ErrBusy", err)
		}
	})

	t.Run("close", func(t *testing.T) {
		pub, err := eng.NewPublisher(engine.PublisherConfig{})
		if err != nil {
			t.Fatal(err)
		}
		var pubs []*engine.Pub
		for i := 0; i < 100; i++ {
			p, err := pub.Publish("q.a", []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			pubs = append(pubs, p)
		}
		pub.Close(ctx) // waits for the writes in flight
		for i, p := range pubs {
			select {
			case <-p.Done():
			default:
				t.Fatalf("write %d not settled after Close", i)
			}
			if _, err := p.Result(); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
		if _, err := pub.Publish("q.a", nil); !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("publish after close: %v", err)
		}
	})
}

func TestFollowerReadsThenFollows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	eng := enginetest.Start(t)
	st, err := eng.Stream(ctx, engine.StreamConfig{Name: "F", Subjects: []string{"f.>"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := eng.Publish(ctx, fmt.Sprintf("f.%d", i%2), []byte(fmt.Sprint(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		cfg  engine.FollowConfig
		want []string // then "4" arrives
	}{
		{"all", engine.FollowConfig{}, []string{"1", "2", "3", "4"}},
		{"from seq", engine.FollowConfig{StartSeq: 2}, []string{"2", "3", "4"}},
		{"filtered", engine.FollowConfig{Filters: []string{"f.1"}}, []string{"1", "3"}},
		{"new only", engine.FollowConfig{NewOnly: true}, []string{"4"}},
	}
	followers := make([]*engine.Follower, len(tests))
	for i, tt := range tests {
		if followers[i], err = st.Follow(ctx, tt.cfg); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		defer followers[i].Stop()
	}
	if _, err := eng.Publish(ctx, "f.0", []byte("4"), nil); err != nil {
		t.Fatal(err)
	}
	for i, tt := range tests {
		var got []string
		for range tt.want {
			m, err := followers[i].Next(ctx)
			if err != nil {
				t.Fatalf("%s: %v after %v", tt.name, err, got)
			}
			got = append(got, string(m.Data))
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := followers[2].Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("filtered follower past its messages: %v", err)
	}
	state, err := st.State(ctx)
	if err != nil || state.LastSeq != 4 || state.Msgs != 4 {
		t.Fatalf("state %+v, %v", state, err)
	}
}
