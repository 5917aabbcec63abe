package c2d

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// The HTTPS device API polls: every request may land on any node, so nothing about it is kept
// on a node. Locks taken here live only in the state bucket and run out there.

// Delivery is a message handed to a device under a lock.
type Delivery struct {
	*Message
	// LockToken settles the message (HTTPS: the quoted ETag; complete, reject and abandon name
	// it in their path).
	LockToken string
	// DeliveryCount counts the deliveries so far, this one included.
	DeliveryCount int
}

// Receive locks and returns deviceID's oldest message that is not locked, or nil when there is
// none. Messages found expired are expired on the way; messages whose deliveries are used up are
// dead-lettered.
func (s *Service) Receive(ctx context.Context, deviceID string) (*Delivery, error) {
	var from uint64
	for {
		qm, err := s.queue.Next(ctx, deviceID, from)
		if errors.Is(err, engine.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, errcode.Wrap(errcode.ServerError, err, "could not read the queue")
		}
		from = qm.Seq + 1
		m, err := decode(deviceID, qm.Seq, qm.Data)
		if err != nil {
			s.log.Error("undecodable message in the queue", "device", deviceID, "seq", qm.Seq, "err", err)
			continue
		}
		if !m.Expiry.After(s.clock.Now()) {
			s.expire(ctx, m)
			continue
		}
		l, outcome, _, err := s.lock(ctx, deviceID, qm.Seq, OwnerHTTPS, nil)
		if err != nil {
			return nil, errcode.Wrap(errcode.ServerError, err, "could not lock the message")
		}
		switch outcome {
		case busy, gone:
			continue
		case deadLetter:
			_ = s.finish(ctx, deviceID, l.seq, l.deliveries, m, StatusDeliveryCountExceeded, "Https")
			continue
		}
		return &Delivery{Message: m, LockToken: l.token(), DeliveryCount: l.deliveries}, nil
	}
}

// held checks that token is deviceID's current lock and returns it with the state's revision.
func (s *Service) held(ctx context.Context, deviceID, token string) (lockToken, lockState, uint64, error) {
	t, err := parseLockToken(token)
	if err != nil {
		return lockToken{}, lockState{}, 0, errcode.Wrap(errcode.ArgumentInvalid, err,
			"the lock token '%s' is not a GUID this hub handed out", printable(token))
	}
	ent, err := s.state.Get(ctx, stateKey(deviceID, t.seq))
	if errors.Is(err, engine.ErrNotFound) {
		return t, lockState{}, 0, lockLost(t.seq)
	}
	if err != nil {
		return t, lockState{}, 0, errcode.Wrap(errcode.ServerError, err, "could not read the lock")
	}
	var st lockState
	_ = json.Unmarshal(ent.Value, &st)
	if st.Nonce != t.nonce || !st.lockedAt(s.clock.Now()) {
		return t, st, 0, lockLost(t.seq)
	}
	return t, st, ent.Revision, nil
}

// Complete settles a received message as done. A lock token that ran out, was settled already or
// is not deviceID's fails with 412002 DeviceMessageLockLost and changes nothing.
func (s *Service) Complete(ctx context.Context, deviceID, token string) error {
	t, st, _, err := s.held(ctx, deviceID, token)
	if err != nil {
		return err
	}
	return s.finish(ctx, deviceID, t.seq, st.Deliveries, nil, StatusSuccess, "Https")
}

// Reject settles a received message as dead-lettered (Rejected).
func (s *Service) Reject(ctx context.Context, deviceID, token string) error {
	t, st, _, err := s.held(ctx, deviceID, token)
	if err != nil {
		return err
	}
	return s.finish(ctx, deviceID, t.seq, st.Deliveries, nil, StatusRejected, "Https")
}

// Abandon puts a received message back in the queue. One whose deliveries are used up is
// dead-lettered instead (DeliveryCountExceeded).
func (s *Service) Abandon(ctx context.Context, deviceID, token string) error {
	t, st, rev, err := s.held(ctx, deviceID, token)
	if err != nil {
		return err
	}
	if st.Deliveries >= s.cfg.MaxDeliveryCount {
		if err := s.finish(ctx, deviceID, t.seq, st.Deliveries, nil, StatusDeliveryCountExceeded, "Https"); err != nil {
			return err
		}
		s.m.C2D.Abandoned.Inc()
		return nil
	}
	err = s.unlock(ctx, deviceID, lease{seq: t.seq, rev: rev, deliveries: st.Deliveries})
	if errors.Is(err, engine.ErrRevisionMismatch) || errors.Is(err, engine.ErrNotFound) {
		return lockLost(t.seq)
	}
	if err != nil {
		return errcode.Wrap(errcode.ServerError, err, "could not abandon the message")
	}
	s.m.C2D.Abandoned.Inc()
	// A connected session of the device (if any) may have walked past this message: an
	// announcement without a sequence number makes it read the queue again.
	_ = s.eng.PublishCore(engine.DeviceSubject(deviceID, "", NotifyKind), nil)
	return nil
}
