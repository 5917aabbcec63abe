package c2d

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// A message's life (spec/device-protocol.md §8) is kept in two places: the message itself in the
// queue stream, and its delivery state in the state bucket under <device>.<sequence>. No state
// means Enqueued and never delivered. A state with an owner and a lock time in the future means
// Invisible (locked by that owner). Settling a message deletes both.
//
// Two engine operations decide every race, so no node needs to coordinate with another:
//   - compare-and-set on the state entry decides between would-be holders of a lock (a lock that
//     ran out and was taken again makes the old holder's token stale: 412002), and
//   - deleting the message from the queue decides between settlements, expiry and purge:
//     exactly one deleter succeeds, and only it emits feedback. The state entry goes after it.
//
// A reader may see a message just before it is deleted and lock it just after; so a lock is
// checked against the queue once taken, and dropped if the message is gone.

// lockState is a message's delivery state as stored.
type lockState struct {
	// Deliveries counts how many times the message has been handed to the device.
	Deliveries int `json:"n"`
	// Owner holds the lock: "https" for a polling device, "conn/<id>" for a connection. Empty
	// means not locked.
	Owner string `json:"o,omitempty"`
	// Nonce is the secret half of the lock token.
	Nonce string `json:"t,omitempty"`
	// Until is when the lock runs out, in unix milliseconds.
	Until int64 `json:"u,omitempty"`
}

func (st lockState) lockedAt(now time.Time) bool {
	return st.Owner != "" && st.Until > now.UnixMilli()
}

// OwnerHTTPS owns the locks of messages received by HTTPS polling.
const OwnerHTTPS = "https"

// connOwnerPrefix starts the owner of locks held by a device connection (MQTT, later AMQP).
const connOwnerPrefix = "conn/"

func stateKey(deviceID string, seq uint64) string {
	return engine.EncodeToken(deviceID) + "." + strconv.FormatUint(seq, 10)
}

// lease is a lock this node took.
type lease struct {
	seq        uint64
	rev        uint64 // state entry revision written by the lock
	nonce      string
	deliveries int
	until      time.Time
}

func (l lease) token() string { return lockToken{seq: l.seq, nonce: l.nonce}.String() }

// lockOutcome says what [Service.lock] did.
type lockOutcome int

const (
	locked     lockOutcome = iota // the caller holds the lock; the message (as it is now) is returned
	busy                          // someone else holds it until the returned time
	deadLetter                    // the delivery count is used up: the caller must dead-letter it
	gone                          // the message left the queue meanwhile
)

// lock locks message seq for owner, counting one more delivery. steal reports whether a lock
// held by another owner may be taken before it runs out (a new connection of the device takes
// over an old connection's locks).
func (s *Service) lock(ctx context.Context, deviceID string, seq uint64, owner string, steal func(string) bool) (lease, lockOutcome, time.Time, error) {
	l, outcome, until, err := s.takeLock(ctx, deviceID, seq, owner, steal)
	if err != nil || outcome != locked {
		return l, outcome, until, err
	}
	// The message may have been settled between the caller's read and the lock.
	if _, err := s.queue.Get(ctx, deviceID, seq); err != nil {

		if errors.Is(err, engine.ErrNotFound) {
			_ = s.state.Delete(ctx, stateKey(deviceID, seq), l.rev)
			return lease{}, gone, time.Time{}, nil
		}
		return lease{}, 0, time.Time{}, err
	}
	return l, locked, time.Time{}, nil
}

func (s *Service) takeLock(ctx context.Context, deviceID string, seq uint64, owner string, steal func(string) bool) (lease, lockOutcome, time.Time, error) {
	key := stateKey(deviceID, seq)
	now := s.clock.Now()
	next := lockState{Deliveries: 1, Owner: owner, Nonce: newNonce(), Until: now.Add(s.cfg.LockDuration).UnixMilli()}
	b, _ := json.Marshal(next)
	rev, err := s.state.Create(ctx, key, b)
	if err == nil {
		return lease{seq: seq, rev: rev, nonce: next.Nonce, deliveries: 1, until: time.UnixMilli(next.Until)}, locked, time.Time{}, nil
	}
	if !errors.Is(err, engine.ErrExists) {
		return lease{}, 0, time.Time{}, err
	}
	for attempt := 0; attempt < 10; attempt++ {
		ent, err := s.state.Get(ctx, key)
		if errors.Is(err, engine.ErrNotFound) {
			if rev, err = s.state.Create(ctx, key, b); err == nil {
				return lease{seq: seq, rev: rev, nonce: next.Nonce, deliveries: 1, until: time.UnixMilli(next.Until)}, locked, time.Time{}, nil
			}
			continue
		}
		if err != nil {
			return lease{}, 0, time.Time{}, err
		}
		var cur lockState
		_ = json.Unmarshal(ent.Value, &cur)
		if cur.lockedAt(now) && (steal == nil || !steal(cur.Owner)) {
			return lease{}, busy, time.UnixMilli(cur.Until), nil
		}
		if cur.Deliveries >= s.cfg.MaxDeliveryCount {
			return lease{seq: seq, rev: ent.Revision, deliveries: cur.Deliveries}, deadLetter, time.Time{}, nil
		}
		next.Deliveries = cur.Deliveries + 1
		b, _ = json.Marshal(next)
		rev, err := s.state.Update(ctx, key, b, ent.Revision)
		if errors.Is(err, engine.ErrRevisionMismatch) {
			continue
		}
		if err != nil {
			return lease{}, 0, time.Time{}, err
		}
		return lease{seq: seq, rev: rev, nonce: next.Nonce, deliveries: next.Deliveries, until: time.UnixMilli(next.Until)}, locked, time.Time{}, nil
	}
	return lease{}, busy, now.Add(time.Second), nil
}

// relock renews a lease this node holds for one more delivery to the same owner (its lock ran out
// without an answer). It reports false when the lease is no longer current.
func (s *Service) relock(ctx context.Context, deviceID string, l lease, owner string) (lease, bool, error) {
	now := s.clock.Now()
	next := lockState{Deliveries: l.deliveries + 1, Owner: owner, Nonce: newNonce(), Until: now.Add(s.cfg.LockDuration).UnixMilli()}
	b, _ := json.Marshal(next)
	rev, err := s.state.Update(ctx, stateKey(deviceID, l.seq), b, l.rev)
	if errors.Is(err, engine.ErrRevisionMismatch) || errors.Is(err, engine.ErrNotFound) {
		return lease{}, false, nil
	}
	if err != nil {
		return lease{}, false, err
	}
	return lease{seq: l.seq, rev: rev, nonce: next.Nonce, deliveries: next.Deliveries, until: time.UnixMilli(next.Until)}, true, nil
}

// unlock returns a message to the queue (abandon, lock given up), keeping its delivery count.
func (s *Service) unlock(ctx context.Context, deviceID string, l lease) error {
	b, _ := json.Marshal(lockState{Deliveries: l.deliveries})
	_, err := s.state.Update(ctx, stateKey(deviceID, l.seq), b, l.rev)
	return err
}

// lockLost is the error for a settlement whose lock is gone.
func lockLost(seq uint64) error {
	return errcode.New(errcode.DeviceMessageLockLost,
		"the lock of message %d is no longer held: it ran out (locks last one minute), the message was settled already, or the token is not this device's", seq)
}

// Outcomes of a message, as feedback names them.
const (
	StatusSuccess               = "Success"
	StatusExpired               = "Expired"
	StatusDeliveryCountExceeded = "DeliveryCountExceeded"
	StatusRejected              = "Rejected"
	StatusPurged                = "Purged"
)

// finish ends a locked message's life with status: it deletes the message (if it is gone, it
// expired, was purged or was settled by someone else: the lock is lost), then its state, and
// emits feedback, metrics and records. m may be nil; it is then read from the queue.
func (s *Service) finish(ctx context.Context, deviceID string, seq uint64, deliveries int, m *Message, status, protocol string) error {
	if m == nil {
		qm, err := s.queue.Get(ctx, deviceID, seq)
		if errors.Is(err, engine.ErrNotFound) {
			return lockLost(seq)
		}
		if err != nil {
			return errcode.Wrap(errcode.ServerError, err, "could not read the message")
		}
		if m, err = decode(deviceID, seq, qm.Data); err != nil {
			m = &Message{DeviceID: deviceID, SequenceNumber: seq}
		}
	}
	if err := s.queue.Delete(ctx, seq); err != nil {
		if errors.Is(err, engine.ErrNotFound) {
			return lockLost(seq)
		}
		return errcode.Wrap(errcode.ServerError, err, "could not settle the message")
	}
	// The state goes without waiting: one left behind names a message that no longer exists,
	// and the bucket's TTL removes it.
	_ = s.eng.DeleteAsync(s.state, stateKey(deviceID, seq))
	switch status {
	case StatusSuccess:
		s.m.C2D.Completed.Inc()
		if m.Ack.wantsSuccess() {
			s.emitFeedback(ctx, m, status)
		}
	case StatusRejected:
		s.m.C2D.Rejected.Inc()
		if m.Ack.wantsFailure() {
			s.emitFeedback(ctx, m, status)
		}
	case StatusDeliveryCountExceeded:
		s.m.C2D.DeadLettered.WithLabelValues(status).Inc()
		s.record("deliveryCountExceeded", m, deliveries, protocol, nil, status, nil)
		if m.Ack.wantsFailure() {
			s.emitFeedback(ctx, m, status)
		}
	}
	return nil
}

// expire removes an expired message, whatever its state, and reports it (MessageExpired).
func (s *Service) expire(ctx context.Context, m *Message) {
	if err := s.queue.Delete(ctx, m.SequenceNumber); err != nil {
		return // settled, purged or expired by another node
	}
	deliveries := 0
	key := stateKey(m.DeviceID, m.SequenceNumber)
	if ent, err := s.state.Get(ctx, key); err == nil {
		var st lockState
		_ = json.Unmarshal(ent.Value, &st)
		deliveries = st.Deliveries
	}
	_ = s.eng.DeleteAsync(s.state, key)
	s.m.C2D.Expired.Inc()
	s.m.C2D.DeadLettered.WithLabelValues(StatusExpired).Inc()
	s.record("messageExpired", m, deliveries, "", nil, "MessageExpired", "410")
	if m.Ack.wantsFailure() {
		s.emitFeedback(ctx, m, StatusExpired)
	}
}

// stealConn lets a connection take over locks held by the device's earlier connections: IoT
// Hub allows one connection per device, so such a lock belongs to a connection that is gone
// (closed, or on a node that died).
func stealConn(self string) func(string) bool {
	return func(owner string) bool { return owner != self && strings.HasPrefix(owner, connOwnerPrefix) }
}
