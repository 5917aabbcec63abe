package events

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/webhook"
)

// maxPending bounds the events of one subscription waiting for a retry; beyond it the
// subscription reads no new events until some are delivered or dead-lettered.
const maxPending = 10000

// deliverAll runs one worker per subscription, starting and stopping them as subscriptions
// come and go.
func (m *Manager) deliverAll(ctx context.Context) error {
	type worker struct {
		sub    Subscription
		cancel context.CancelFunc
		done   chan struct{}
	}
	workers := map[string]*worker{}
	defer func() {
		for _, w := range workers {
			w.cancel()
			<-w.done
		}
	}()
	for {
		subs, err := m.List(ctx)
		if err == nil {
			seen := map[string]bool{}
			for _, s := range subs {
				seen[s.Name] = true
				w := workers[s.Name]
				if w != nil {
					b1, _ := json.Marshal(w.sub)
					b2, _ := json.Marshal(s)
					if string(b1) == string(b2) {
						continue
					}
					w.cancel()
					<-w.done
				}
				wctx, cancel := context.WithCancel(ctx)
				w = &worker{sub: s, cancel: cancel, done: make(chan struct{})}
				workers[s.Name] = w
				go func(w *worker) {
					defer close(w.done)
					for wctx.Err() == nil {
						if err := m.deliverSub(wctx, w.sub); err != nil && wctx.Err() == nil {
							m.log.Warn("event delivery stopped; restarting", "subscription", w.sub.Name, "err", err)
							sleep(wctx, 2*time.Second)
						}
					}
				}(w)
			}
			for name, w := range workers {
				if !seen[name] {
					w.cancel()
					<-w.done
					delete(workers, name)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.cfg.Poll):
		}
	}
}

// pending is an event waiting for a retry.
type pending struct {
	seq      uint64
	event    Event
	attempts int
	next     time.Time
	lastErr  string
}

type retryHeap []*pending

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*pending)) }
func (h *retryHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}

// deliverSub delivers one subscription's events: new ones in order as they come, failed ones
// again when their back-off has passed, in the meantime. Its checkpoint is the last event
// before the oldest one still waiting, so a restart redelivers (at least once) rather than
// loses.
func (m *Manager) deliverSub(ctx context.Context, s Subscription) error {
	st, err := m.eng.OpenStream(ctx, Stream)
	if err != nil {
		return err
	}
	key := "sub." + engine.EncodeToken(s.Name)
	fc := engine.FollowConfig{NewOnly: true}
	if ent, err := m.state.Get(ctx, key); err == nil {
		// Put records where a new subscription starts, so events stored before its worker
		// runs still reach it.
		seq, _ := strconv.ParseUint(string(ent.Value), 10, 64)
		fc.StartSeq, fc.NewOnly = seq+1, false
	}
	f, err := st.Follow(ctx, fc)
	if err != nil {
		return err
	}
	defer f.Stop()

	var mu sync.Mutex
	retries := &retryHeap{}
	waiting := map[uint64]bool{} // sequences in retries
	var lastRead uint64
	var saveMu sync.Mutex // serializes checkpoint writes (lock order: saveMu, then mu)
	saved := fc.StartSeq - min(fc.StartSeq, 1)
	var lastSave time.Time
	// saveCheckpoint saves the position if it moved and, unless force, saveEvery has passed
	// since the last save (see saveEvery for why a replay is safe). The retry loop calls it
	// every 50 ms, so a position is saved soon after the stream goes quiet.
	saveCheckpoint := func(ctx context.Context, force bool) {
		saveMu.Lock()
		defer saveMu.Unlock()
		if !force && time.Since(lastSave) < saveEvery {
			return
		}
		mu.Lock()
		cp := lastRead
		for seq := range waiting {
			if seq-1 < cp {
				cp = seq - 1
			}
		}
		mu.Unlock()
		if cp > saved {
			lastSave = time.Now()
			if m.save(ctx, key, cp) == nil {
				saved = cp
			}
		}
	}
	// attempt delivers p once and reschedules or dead-letters it on failure.
	attempt := func(p *pending) {
		p.attempts++
		err := m.post(ctx, s, p.event, p.attempts)
		age := m.cfg.Now().Sub(eventTime(p.event))
		switch {
		case err == nil:
			if m.cfg.OnDelivery != nil {
				m.cfg.OnDelivery("success", p.event.EventType)
			}
			if m.cfg.OnLatency != nil {
				m.cfg.OnLatency(age)
			}
		case errors.Is(err, webhook.ErrPermanent), p.attempts >= s.MaxDeliveryAttempts, age >= time.Duration(s.EventTimeToLive):
			reason := "MaxDeliveryAttemptsExceeded"
			switch {
			case errors.Is(err, webhook.ErrPermanent):
				reason = "DeliveryFailedPermanently"
			case age >= time.Duration(s.EventTimeToLive) && p.attempts < s.MaxDeliveryAttempts:
				reason = "TimeToLiveExceeded"
			}
			m.deadLetter(ctx, s, p, reason, err)
		default:
			p.lastErr = err.Error()
			p.next = m.cfg.Now().Add(webhook.Backoff(p.attempts, m.cfg.RetryBase, m.cfg.RetryMax))
			mu.Lock()
			heap.Push(retries, p)
			waiting[p.seq] = true
			mu.Unlock()
			return
		}
		mu.Lock()
		delete(waiting, p.seq)
		mu.Unlock()
	}

	// Retries run beside the reading of new events.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			mu.Lock()
			var due *pending
			if retries.Len() > 0 && !(*retries)[0].next.After(m.cfg.Now()) {
				due = heap.Pop(retries).(*pending)
			}
			mu.Unlock()
			if due == nil {
				saveCheckpoint(ctx, false)
				sleep(ctx, 50*time.Millisecond)
				continue
			}
			attempt(due)
			saveCheckpoint(ctx, false)
		}
	}()
	defer func() {
		wg.Wait()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exitSave)
		defer cancel()
		// A deleted subscription's worker stops after its position is removed; keep it removed.
		if _, ok, err := m.Get(sctx, s.Name); err == nil && ok {
			saveCheckpoint(sctx, true)
		}
	}()

	for {
		mu.Lock()
		full := len(waiting) >= maxPending
		mu.Unlock()
		if full {
			sleep(ctx, 100*time.Millisecond)
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		msg, err := f.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var e Event
		if json.Unmarshal(msg.Data, &e) == nil && s.Wants(e) {
			attempt(&pending{seq: msg.Sequence, event: e})
		}
		mu.Lock()
		lastRead = msg.Sequence
		mu.Unlock()
		saveCheckpoint(ctx, false)
	}
}

func eventTime(e Event) time.Time {
	t, err := time.Parse(time.RFC3339Nano, e.EventTime)
	if err != nil {
		return time.Now()
	}
	return t
}

// post delivers one event as a one-event batch in the subscription's schema.
func (m *Manager) post(ctx context.Context, s Subscription, e Event, attempt int) error {
	var body []byte
	ct := "application/json"
	if s.Schema == SchemaCloudEvents {
		body, _ = json.Marshal([]CloudEvent{e.CloudEvent()})
		ct = "application/cloudevents-batch+json; charset=utf-8"
	} else {
		body, _ = json.Marshal([]Event{e})
	}
	h := http.Header{}
	h.Set("aeg-event-type", "Notification")
	h.Set("aeg-subscription-name", s.Name)
	h.Set("aeg-delivery-count", strconv.Itoa(attempt-1))
	h.Set("aeg-metadata-version", "1")
	if s.Schema != SchemaCloudEvents {
		h.Set("aeg-data-version", e.DataVersion)
	}
	err := webhook.Post(ctx, m.cfg.Client, s.Endpoint, body, webhook.Options{Timeout: m.cfg.Timeout, ContentType: ct, Header: h})
	if err != nil && m.cfg.OnDelivery != nil {
		m.cfg.OnDelivery("failure", e.EventType)
	}
	return err
}

// deadLetter records an event whose delivery finally failed.
func (m *Manager) deadLetter(ctx context.Context, s Subscription, p *pending, reason string, err error) {
	d := DeadLetter{Subscription: s.Name, Reason: reason, Attempts: p.attempts, Time: m.cfg.Now().UTC(), Event: p.event}
	if err != nil {
		d.LastError = err.Error()
	}
	b, _ := json.Marshal(d)
	if _, perr := m.eng.Publish(ctx, deadSubject+engine.EncodeToken(s.Name), b, nil); perr != nil && ctx.Err() == nil {
		m.log.Warn("dead-letter an event", "subscription", s.Name, "err", perr)
	}
	m.log.Warn("event dead-lettered", "subscription", s.Name, "event", p.event.ID, "type", p.event.EventType, "reason", reason, "attempts", p.attempts)
}
