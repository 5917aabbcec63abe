package c2d

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// FeedbackRecord tells a sender what became of one message it asked feedback for
// (iothub-ack). Its JSON shape is IoT Hub's.
type FeedbackRecord struct {
	OriginalMessageID  string `json:"originalMessageId"`
	Description        string `json:"description"`
	DeviceGenerationID string `json:"deviceGenerationId"`
	DeviceID           string `json:"deviceId"`
	// EnqueuedTimeUTC is when the outcome happened.
	EnqueuedTimeUTC string `json:"enqueuedTimeUtc"`
	// StatusCode is Success, Expired, DeliveryCountExceeded, Rejected or Purged.
	StatusCode string `json:"statusCode"`
}

// FeedbackBatch is a set of feedback records handed to the service under one lock.
type FeedbackBatch struct {
	// LockToken completes or abandons the batch (REST: the quoted ETag).
	LockToken string
	// Records are the batch's records, oldest first.
	Records []FeedbackRecord
	// EnqueuedTime is when the newest record was stored.
	EnqueuedTime time.Time
}

// MaxFeedbackBatch is the most records one batch holds, as on IoT Hub.
const MaxFeedbackBatch = 64

// emitFeedback stores a feedback record for m's sender.
func (s *Service) emitFeedback(ctx context.Context, m *Message, status string) {
	rec := FeedbackRecord{
		OriginalMessageID: m.MessageID, Description: status, DeviceGenerationID: m.GenerationID,
		DeviceID: m.DeviceID, EnqueuedTimeUTC: FormatTime(s.clock.Now()), StatusCode: status,
	}
	b, _ := json.Marshal(rec)
	if _, err := s.eng.Publish(ctx, feedbackPrefix+engine.EncodeToken(m.DeviceID), b, nil); err != nil {
		s.log.Error("feedback not stored", "device", m.DeviceID, "messageId", m.MessageID, "status", status, "err", err)
	}
}

// fbLock is a feedback batch's lock as stored: the engine tokens of its records and when the
// lock runs out.
type fbLock struct {
	Tokens []string `json:"t"`
	Until  int64    `json:"u"` // unix milliseconds
}

// ReceiveFeedback locks and returns the waiting feedback, at most [MaxFeedbackBatch] records,
// or nil when there is none. The batch stays invisible for the feedback lock duration; after
// that, or after [Service.AbandonFeedback], its records come back in a later batch, up to the
// feedback max delivery count.
func (s *Service) ReceiveFeedback(ctx context.Context) (*FeedbackBatch, error) {
	taken, err := s.fbWork.Take(ctx, MaxFeedbackBatch)
	if err != nil {
		return nil, errcode.Wrap(errcode.ServerError, err, "could not read the feedback")
	}
	if len(taken) == 0 {
		return nil, nil
	}
	start := s.clock.Now()
	b := &FeedbackBatch{LockToken: newGUID()}
	lk := fbLock{Until: start.Add(s.cfg.FeedbackLock).UnixMilli()}
	for _, t := range taken {
		var rec FeedbackRecord
		if json.Unmarshal(t.Data, &rec) != nil {
			_ = s.eng.Settle(ctx, t.Token, engine.Done) // not a record; drop it
			continue
		}
		b.Records = append(b.Records, rec)
		lk.Tokens = append(lk.Tokens, t.Token)
		if t.Time.After(b.EnqueuedTime) {
			b.EnqueuedTime = t.Time
		}
	}
	if len(b.Records) == 0 {
		return nil, nil
	}
	data, _ := json.Marshal(lk)
	if _, err := s.fbLocks.Create(ctx, b.LockToken, data); err != nil {
		for _, tok := range lk.Tokens {
			_ = s.eng.Settle(ctx, tok, engine.Release)
		}
		return nil, errcode.Wrap(errcode.ServerError, err, "could not lock the feedback")
	}
	return b, nil
}

// heldFeedback returns a feedback batch's lock if it is current.
func (s *Service) heldFeedback(ctx context.Context, token string) (fbLock, uint64, error) {
	if _, err := parseGUID(token); err != nil {
		return fbLock{}, 0, errcode.Wrap(errcode.ArgumentInvalid, err, "the lock token '%s' is not a GUID this hub handed out", printable(token))
	}
	ent, err := s.fbLocks.Get(ctx, token)
	if errors.Is(err, engine.ErrNotFound) {
		return fbLock{}, 0, errcode.New(errcode.DeviceMessageLockLost, "the feedback batch's lock is not held: it ran out or the batch was settled already")
	}
	if err != nil {
		return fbLock{}, 0, errcode.Wrap(errcode.ServerError, err, "could not read the feedback lock")
	}
	var lk fbLock
	_ = json.Unmarshal(ent.Value, &lk)
	if lk.Until <= s.clock.Now().UnixMilli() {
		return fbLock{}, 0, errcode.New(errcode.DeviceMessageLockLost, "the feedback batch's lock ran out (it lasts %s); read the feedback again", s.cfg.FeedbackLock)
	}
	return lk, ent.Revision, nil
}

// CompleteFeedback removes a feedback batch for good.
func (s *Service) CompleteFeedback(ctx context.Context, token string) error {
	return s.settleFeedback(ctx, token, engine.Done)
}

// AbandonFeedback releases a feedback batch so that its records are read again.
func (s *Service) AbandonFeedback(ctx context.Context, token string) error {
	return s.settleFeedback(ctx, token, engine.Release)
}

func (s *Service) settleFeedback(ctx context.Context, token string, how engine.Outcome) error {
	lk, rev, err := s.heldFeedback(ctx, token)
	if err != nil {
		return err
	}
	// Deleting the lock first makes a second settlement of the same batch fail with 412002.
	if err := s.fbLocks.Delete(ctx, token, rev); err != nil {
		if errors.Is(err, engine.ErrRevisionMismatch) || errors.Is(err, engine.ErrNotFound) {
			return errcode.New(errcode.DeviceMessageLockLost, "the feedback batch was settled already")
		}
		return errcode.Wrap(errcode.ServerError, err, "could not settle the feedback")
	}
	for _, tok := range lk.Tokens {
		if err := s.eng.Settle(ctx, tok, how); err != nil {
			return errcode.Wrap(errcode.ServerError, err, "could not settle the feedback")
		}
	}
	return nil
}
