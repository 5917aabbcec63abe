package upload

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// Notification is a file upload notification: what the service side learns when a device
// reports a successful upload. Field names are IoT Hub's.
type Notification struct {
	DeviceID        string    `json:"deviceId"`
	BlobURI         string    `json:"blobUri"`
	BlobName        string    `json:"blobName"`
	LastUpdatedTime time.Time `json:"lastUpdatedTime"`
	BlobSizeInBytes int64     `json:"blobSizeInBytes"`
	EnqueuedTimeUtc time.Time `json:"enqueuedTimeUtc"`
}

// Received is a notification handed to a reader under a lock.
type Received struct {
	Notification
	// Body is the notification as stored: the JSON the REST API answers with.
	Body []byte
	// LockToken completes or abandons the notification while the lock holds.
	LockToken string
	// LockedUntil is when the lock ends and the notification may be handed out again.
	LockedUntil time.Time
	// DeliveryCount counts how often it was handed out, this time included.
	DeliveryCount int
}

// QueueConfig shapes the notification queue; the zero value gives IoT Hub's defaults.
type QueueConfig struct {
	// TTL is how long a notification waits to be read (fileNotifications.ttlAsIso8601). Zero
	// means 1 h.
	TTL time.Duration
	// LockDuration is how long a received notification stays locked
	// (fileNotifications.lockDuration). Zero means 60 s.
	LockDuration time.Duration
	// MaxDeliveryCount is how often a notification is handed out before it is dropped
	// (fileNotifications.maxDeliveryCount). Zero means 100.
	MaxDeliveryCount int
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// Queue is the hub's service-side file upload notification queue, built like the C2D feedback
// queue (package c2d) and wholly in the engine, so any node may receive, complete or abandon any
// notification:
//
//   - notifications are messages of one stream (FILENOTIF), dropped after the TTL;
//   - one shared durable reader of the stream hands each out to one receiver at a time, under
//     a lock of LockDuration, at most MaxDeliveryCount times;
//   - the lock token a receiver gets is a GUID kept in a bucket (filenotif-locks) with the
//     reader's own token and when the lock ends; completing or abandoning deletes it by
//     compare-and-set, so a notification is settled once.
type Queue struct {
	cfg   QueueConfig
	eng   *engine.Engine
	work  *engine.Work
	locks *engine.Bucket
}

// Names of the queue in the engine.
const (
	notifyStream  = "FILENOTIF"
	notifySubject = "filenotif"
	notifyLocks   = "filenotif-locks"
)

// OpenQueue opens the notification queue, creating it on first use and applying the settings.
func OpenQueue(ctx context.Context, eng *engine.Engine, cfg QueueConfig) (*Queue, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = time.Hour
	}
	if cfg.LockDuration <= 0 {
		cfg.LockDuration = 60 * time.Second
	}
	if cfg.MaxDeliveryCount <= 0 {
		cfg.MaxDeliveryCount = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	st, err := eng.Stream(ctx, engine.StreamConfig{Name: notifyStream, Subjects: []string{notifySubject}, MaxAge: cfg.TTL})
	if err != nil {
		return nil, err
	}
	work, err := st.Work(ctx, engine.WorkConfig{Name: "service", AckWait: cfg.LockDuration, MaxDeliver: cfg.MaxDeliveryCount})
	if err != nil {
		return nil, err
	}
	locks, err := eng.KV(ctx, engine.BucketConfig{Name: notifyLocks, Description: "lock tokens of file upload notifications",
		TTL: 10 * time.Minute})
	if err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg, eng: eng, work: work, locks: locks}, nil
}

// Send stores a notification.
func (q *Queue) Send(ctx context.Context, n Notification) error {
	data, err := json.Marshal(n)
	if err != nil {
		return err
	}
	_, err = q.eng.Publish(ctx, notifySubject, data, nil)
	return err
}

// lock is a received notification's lock as stored: the reader's token and when it ends.
type lock struct {
	Token string `json:"t"`
	Until int64  `json:"u"` // unix milliseconds
}

// Receive hands out the oldest notification no one holds, locking it for the lock duration.
// ok is false when there is none.
func (q *Queue) Receive(ctx context.Context) (Received, bool, error) {
	for {
		taken, err := q.work.Take(ctx, 1)
		if err != nil {
			return Received{}, false, errcode.Wrap(errcode.ServerError, err, "could not read the file notifications")
		}
		if len(taken) == 0 {
			return Received{}, false, nil
		}
		t := taken[0]
		var n Notification
		if json.Unmarshal(t.Data, &n) != nil {
			_ = q.eng.Settle(ctx, t.Token, engine.Done) // not a notification; drop it
			continue
		}
		until := q.cfg.Now().Add(q.cfg.LockDuration)
		r := Received{Notification: n, Body: t.Data, LockToken: newGUID(), LockedUntil: until, DeliveryCount: int(t.Delivered)}
		data, _ := json.Marshal(lock{Token: t.Token, Until: until.UnixMilli()})
		if _, err := q.locks.Create(ctx, r.LockToken, data); err != nil {
			_ = q.eng.Settle(ctx, t.Token, engine.Release)
			return Received{}, false, errcode.Wrap(errcode.ServerError, err, "could not lock the file notification")
		}
		return r, true, nil
	}
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func isGUID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	_, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	return err == nil
}

// Complete removes a received notification for good.
func (q *Queue) Complete(ctx context.Context, token string) error {
	return q.settle(ctx, token, engine.Done)
}

// Abandon releases a received notification so that it is received again.
func (q *Queue) Abandon(ctx context.Context, token string) error {
	return q.settle(ctx, token, engine.Release)
}

// settle checks that token is a live lock and settles its notification. A malformed token is
// 400004; one whose lock ran out, or that was settled already, is 412002, as for C2D feedback.
func (q *Queue) settle(ctx context.Context, token string, how engine.Outcome) error {
	token = strings.Trim(strings.TrimSpace(token), `"`)
	if !isGUID(token) {
		return errcode.New(errcode.ArgumentInvalid, "the lock token '%s' is not a GUID this hub handed out", printable(token))
	}
	ent, err := q.locks.Get(ctx, token)
	if errors.Is(err, engine.ErrNotFound) {
		return errcode.New(errcode.DeviceMessageLockLost, "the file notification's lock is not held: it ran out or the notification was settled already")
	}
	if err != nil {
		return errcode.Wrap(errcode.ServerError, err, "could not read the file notification lock")
	}
	var lk lock
	_ = json.Unmarshal(ent.Value, &lk)
	if lk.Until <= q.cfg.Now().UnixMilli() {
		return errcode.New(errcode.DeviceMessageLockLost, "the file notification's lock ran out (it lasts %s); receive the notifications again", q.cfg.LockDuration)
	}
	// Deleting the lock first makes a second settlement of the same notification fail.
	if err := q.locks.Delete(ctx, token, ent.Revision); err != nil {
		if errors.Is(err, engine.ErrRevisionMismatch) || errors.Is(err, engine.ErrNotFound) {
			return errcode.New(errcode.DeviceMessageLockLost, "the file notification was settled already")
		}
		return errcode.Wrap(errcode.ServerError, err, "could not settle the file notification")
	}
	if err := q.eng.Settle(ctx, lk.Token, how); err != nil {
		return errcode.Wrap(errcode.ServerError, err, "could not settle the file notification")
	}
	return nil
}
