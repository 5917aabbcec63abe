package upload

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/metrics"
)

// Store is where uploads go: the built-in store ([*blob.Local]) or an external account
// ([*blob.Remote]).
type Store interface {
	// Container is the container uploads go to.
	Container() string
	// Grant signs a SAS that lets a device create and write one blob until expiry.
	Grant(name string, expiry time.Time) blob.Grant
	// URI is the blob's URL as devices see it.
	URI(name string) string
	// Confirm returns the properties of an uploaded blob, or a Blob service error (404
	// BlobNotFound when it does not exist).
	Confirm(ctx context.Context, name string) (blob.Props, error)
	// OpenReader streams a blob's content.
	OpenReader(ctx context.Context, name string) (io.ReadCloser, blob.Props, error)
}

// Defaults and limits, as IoT Hub has them.
const (
	// MaxActive is how many uploads a device may have in progress at once.
	MaxActive = 10
	// DefaultSASTTL is how long an upload's SAS URI, and the upload, stay valid.
	DefaultSASTTL = time.Hour
)

// Config wires the upload service.
type Config struct {
	Engine *engine.Engine
	Store  Store
	// Index lists the uploaded files (for `roost files`).
	Index *blob.Index
	// Queue receives a notification for every successful upload. Nil disables notifications
	// (IoT Hub's enableFileUploadNotifications=false).
	Queue *Queue
	// Diag receives the records of events no request reports: uploads whose SAS expired before
	// their completion was notified, device-reported failures, missing blobs.
	Diag *diag.Writer
	// Metrics, when set, counts initiations and completions.
	Metrics *metrics.Metrics
	// SASTTL is how long an upload stays valid. Zero means 1 h.
	SASTTL time.Duration
	// MaxActive is how many uploads a device may have in progress. Zero means 10.
	MaxActive int
	// SweepEvery is how often expired uploads are looked for. Zero means 30 s.
	SweepEvery time.Duration
	// NodeID names this node in the upload's session (for diagnostics).
	NodeID string
	// Now returns the current time. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Service runs file uploads: it starts them (a SAS URI within the per-device limit), completes
// them (a notification for the service side) and expires the ones never completed.
//
// All of its state is in the engine (bucket "uploads"): each upload's session under
// c.<correlationId>, and each device's active uploads under d.<deviceId> as a list changed only by
// compare-and-set. Counting the list is how the limit of 10 holds across nodes: two nodes
// starting a device's eleventh upload at the same moment race on one revision, and one of them
// loses and reads the list again. An entry whose SAS has expired does not count, whether or not
// the sweeper has removed it yet.
type Service struct {
	cfg     Config
	b       *engine.Bucket
	log     *slog.Logger
	stop    chan struct{}
	stopped sync.WaitGroup
	once    sync.Once
}

// session is one upload, from initiation until completion or expiry.
type session struct {
	CorrelationID string    `json:"correlationId"`
	DeviceID      string    `json:"deviceId"`
	BlobName      string    `json:"blobName"` // stored name, {deviceId}/{name}
	Created       time.Time `json:"created"`
	Expires       time.Time `json:"expires"`
	Node          string    `json:"node,omitempty"`
	AuthType      string    `json:"authType,omitempty"`
	Expired       bool      `json:"expired,omitempty"`
}

// active lists a device's uploads in progress.
type active struct {
	Uploads []slot `json:"uploads"`
}

type slot struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// uploadsBucket holds sessions and per-device lists. Its TTL outlives the longest SAS TTL (24 h)
// by a day, so an expired upload is still known (400016, not 400015) for a while.
const uploadsBucket = "uploads"

// Open starts the service and its sweeper. Close stops the sweeper.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.SASTTL <= 0 {
		cfg.SASTTL = DefaultSASTTL
	}
	if cfg.MaxActive <= 0 {
		cfg.MaxActive = MaxActive
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, err := cfg.Engine.KV(ctx, engine.BucketConfig{Name: uploadsBucket, Description: "file upload sessions and per-device active uploads",
		TTL: 48 * time.Hour})
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, b: b, log: log.With("component", "upload"), stop: make(chan struct{})}
	s.stopped.Add(1)
	go s.sweepLoop()
	return s, nil
}

// Close stops the sweeper and waits for it.
func (s *Service) Close() {
	s.once.Do(func() { close(s.stop) })
	s.stopped.Wait()
}

// Request is a device's request to start an upload (POST /devices/{id}/files).
type Request struct {
	DeviceID string
	// BlobName is the name the device asked for; the upload is stored as {deviceId}/{BlobName}.
	BlobName string
	// AuthType is the device's authType JSON, kept for the records of this upload.
	AuthType string
}

// Started is the answer to a started upload: the fields of IoT Hub's response body.
type Started struct {
	CorrelationID string `json:"correlationId"`
	HostName      string `json:"hostName"`
	ContainerName string `json:"containerName"`
	BlobName      string `json:"blobName"`
	SASToken      string `json:"sasToken"`
	// Expires is when the SAS ends and the upload stops counting toward the limit.
	Expires time.Time `json:"-"`
	// BlobURI is the blob's URL, for records.
	BlobURI string `json:"-"`
}

func newCorrelationID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sessionKey(cid string) string { return "c." + engine.EncodeToken(cid) }
func deviceKey(dev string) string  { return "d." + engine.EncodeToken(dev) }

// Start begins an upload: it checks the name, takes one of the device's upload slots and signs a
// SAS URI for the blob. An eleventh upload in progress is 403006.
func (s *Service) Start(ctx context.Context, req Request) (Started, error) {
	name, err := BlobName(req.DeviceID, req.BlobName)
	if err != nil {
		return Started{}, err
	}
	now := s.cfg.Now()
	sess := session{CorrelationID: newCorrelationID(), DeviceID: req.DeviceID, BlobName: name, Created: now.UTC(),
		Expires: now.Add(s.cfg.SASTTL).UTC(), Node: s.cfg.NodeID, AuthType: req.AuthType}
	data, _ := json.Marshal(sess)
	if _, err := s.b.Create(ctx, sessionKey(sess.CorrelationID), data); err != nil {
		return Started{}, errcode.Wrap(errcode.ServerError, err, "could not record the upload")
	}
	if err := s.reserve(ctx, req.DeviceID, slot{ID: sess.CorrelationID, Expires: sess.Expires}); err != nil {
		_ = s.b.Delete(context.WithoutCancel(ctx), sessionKey(sess.CorrelationID), 0)
		return Started{}, err
	}
	g := s.cfg.Store.Grant(name, sess.Expires)
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Uploads.Initiations.Inc()
	}
	return Started{CorrelationID: sess.CorrelationID, HostName: g.HostName, ContainerName: g.Container, BlobName: name,
		SASToken: g.SASToken, Expires: sess.Expires, BlobURI: s.cfg.Store.URI(name)}, nil
}

// casTries bounds a compare-and-set loop; each lost round means another node changed the same
// key in between, so running out needs a storm of concurrent writers.
const casTries = 50

// reserve adds an upload to the device's active list if fewer than MaxActive unexpired uploads
// are on it.
func (s *Service) reserve(ctx context.Context, dev string, add slot) error {
	key := deviceKey(dev)
	for range casTries {
		var (
			list active
			rev  uint64
		)
		ent, err := s.b.Get(ctx, key)
		switch {
		case err == nil:
			rev = ent.Revision
			_ = json.Unmarshal(ent.Value, &list)
		case !errors.Is(err, engine.ErrNotFound):
			return errcode.Wrap(errcode.ServerError, err, "could not read the device's uploads")
		}
		now := s.cfg.Now()
		live := list.Uploads[:0]
		var soonest time.Time
		for _, u := range list.Uploads {
			if u.Expires.After(now) {
				live = append(live, u)
				if soonest.IsZero() || u.Expires.Before(soonest) {
					soonest = u.Expires
				}
			}
		}
		if len(live) >= s.cfg.MaxActive {
			return errcode.New(errcode.DeviceMaximumActiveFileUploadLimitExceeded,
				"device %s already has %d file uploads in progress, the most allowed; notify the hub when an upload completes "+
					"(POST /devices/{id}/files/notifications), or wait until the oldest one's SAS URI expires at %s",
				printable(dev), len(live), soonest.UTC().Format(time.RFC3339))
		}
		list.Uploads = append(live, add)
		data, _ := json.Marshal(list)
		if rev == 0 {
			_, err = s.b.Create(ctx, key, data)
		} else {
			_, err = s.b.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, engine.ErrExists) && !errors.Is(err, engine.ErrRevisionMismatch) {
			return errcode.Wrap(errcode.ServerError, err, "could not record the device's uploads")
		}
	}
	return errcode.New(errcode.ServerBusy, "too many concurrent changes to device %s's uploads; try again", printable(dev))
}

// release removes an upload from the device's active list.
func (s *Service) release(ctx context.Context, dev, cid string) error {
	key := deviceKey(dev)
	for range casTries {
		ent, err := s.b.Get(ctx, key)
		if errors.Is(err, engine.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var list active
		_ = json.Unmarshal(ent.Value, &list)
		kept := list.Uploads[:0]
		for _, u := range list.Uploads {
			if u.ID != cid {
				kept = append(kept, u)
			}
		}
		if len(kept) == len(list.Uploads) {
			return nil
		}
		list.Uploads = kept
		data, _ := json.Marshal(list)
		if _, err = s.b.Update(ctx, key, data, ent.Revision); err == nil {
			return nil
		}
		if !errors.Is(err, engine.ErrRevisionMismatch) {
			return err
		}
	}
	return errors.New("upload: too many concurrent changes")
}

// Active returns how many uploads the device has in progress (unexpired, not completed).
func (s *Service) Active(ctx context.Context, dev string) (int, error) {
	ent, err := s.b.Get(ctx, deviceKey(dev))
	if errors.Is(err, engine.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var list active
	_ = json.Unmarshal(ent.Value, &list)
	n, now := 0, s.cfg.Now()
	for _, u := range list.Uploads {
		if u.Expires.After(now) {
			n++
		}
	}
	return n, nil
}

// Result is a device's report that an upload ended (POST /devices/{id}/files/notifications).
type Result struct {
	DeviceID      string
	CorrelationID string
	// IsSuccess is required; nil is 400019.
	IsSuccess         *bool
	StatusCode        int
	StatusDescription string
}

// Completed says what a completion did.
type Completed struct {
	BlobName string
	BlobURI  string
	// Notified is set when a notification was queued for the service side.
	Notified bool
	// Size is the blob's size when the upload succeeded.
	Size int64
}

// Complete ends an upload: it stops counting toward the device's limit and, when the device
// reports success and the blob exists, a notification is queued. An unknown correlation id, or
// one of another device's upload, is 400015; one whose SAS expired is 400016; a missing or
// non-boolean isSuccess is 400019. A device-reported failure and a reported success whose blob
// does not exist are accepted (the device can do nothing more) and logged as FileUploadOperations
// errors, as IoT Hub logs them.
func (s *Service) Complete(ctx context.Context, r Result) (Completed, error) {
	if r.CorrelationID == "" {
		return Completed{}, errcode.New(errcode.InvalidFileUploadCorrelationId, "the notification carries no correlationId")
	}
	if r.IsSuccess == nil {
		return Completed{}, errcode.New(errcode.InvalidFileUploadCompletionStatus, "the notification must say isSuccess (true or false)")
	}
	ent, err := s.b.Get(ctx, sessionKey(r.CorrelationID))
	unknown := errcode.New(errcode.InvalidFileUploadCorrelationId,
		"correlationId '%s' is not a file upload of device %s in progress (unknown, already completed, or another device's)",
		printable(r.CorrelationID), printable(r.DeviceID))
	if errors.Is(err, engine.ErrNotFound) {
		return Completed{}, unknown
	}
	if err != nil {
		return Completed{}, errcode.Wrap(errcode.ServerError, err, "could not read the upload")
	}
	var sess session
	if json.Unmarshal(ent.Value, &sess) != nil || sess.DeviceID != r.DeviceID {
		return Completed{}, unknown
	}
	now := s.cfg.Now()
	if sess.Expired || !now.Before(sess.Expires) {
		_ = s.release(ctx, sess.DeviceID, sess.CorrelationID)
		return Completed{}, errcode.New(errcode.ExpiredFileUploadCorrelationId,
			"the file upload %s expired at %s, before its completion was notified; start a new upload",
			printable(r.CorrelationID), sess.Expires.Format(time.RFC3339))
	}
	out := Completed{BlobName: sess.BlobName, BlobURI: s.cfg.Store.URI(sess.BlobName)}
	var props blob.Props
	missing := false
	if *r.IsSuccess {
		props, err = s.cfg.Store.Confirm(ctx, sess.BlobName)
		if err != nil {
			if blob.AsStorageError(err).Code != blob.CodeBlobNotFound {
				return Completed{}, errcode.Wrap(errcode.ServerBusy, err, "could not check the uploaded blob; notify again")
			}
			missing = true
		}
	}
	// Claim the completion: of two notifications racing for one upload, one deletes the session
	// at its revision and the other finds it gone.
	if err := s.b.Delete(ctx, sessionKey(r.CorrelationID), ent.Revision); err != nil {
		if errors.Is(err, engine.ErrRevisionMismatch) || errors.Is(err, engine.ErrNotFound) {
			return Completed{}, unknown
		}
		return Completed{}, errcode.Wrap(errcode.ServerError, err, "could not complete the upload")
	}
	if err := s.release(ctx, sess.DeviceID, sess.CorrelationID); err != nil {
		s.log.Warn("could not release an upload slot; it frees when the SAS expires", "device", sess.DeviceID, "err", err)
	}
	if s.cfg.Metrics != nil {
		status := "success"
		if !*r.IsSuccess || missing {
			status = "failure"
		}
		s.cfg.Metrics.Uploads.Completions.WithLabelValues(status).Inc()
	}
	rec := Failure{DeviceID: sess.DeviceID, AuthType: sess.AuthType, BlobURI: out.BlobURI, Operation: OpComplete,
		Duration: now.Sub(sess.Created)}
	switch {
	case !*r.IsSuccess:
		rec.Err = errcode.New(errcode.InvalidStorageEndpointOrBlob, "the device reported that the upload of %s failed: status %d %s",
			printable(sess.BlobName), r.StatusCode, printable(r.StatusDescription))
		s.write(ctx, rec)
		return out, nil
	case missing:
		rec.Err = errcode.New(errcode.GenericNotFound, "the device reported a successful upload of %s, but the blob does not exist; no notification was sent",
			printable(sess.BlobName))
		s.write(ctx, rec)
		return out, nil
	}
	out.Size = props.Size
	if s.cfg.Queue == nil {
		return out, nil
	}
	n := Notification{DeviceID: sess.DeviceID, BlobURI: out.BlobURI, BlobName: sess.BlobName, LastUpdatedTime: props.Modified.UTC(),
		BlobSizeInBytes: props.Size, EnqueuedTimeUtc: now.UTC()}
	if err := s.cfg.Queue.Send(ctx, n); err != nil {
		return out, errcode.Wrap(errcode.ServerError, err, "the upload is complete, but its notification could not be queued")
	}
	out.Notified = true
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Uploads.NotificationsQueued.Inc()
	}
	return out, nil
}

func (s *Service) write(ctx context.Context, f Failure) {
	if s.cfg.Diag == nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.cfg.Diag.Write(wctx, f.Record())
}

func (s *Service) sweepLoop() {
	defer s.stopped.Done()
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.SweepEvery)
			if _, err := s.Sweep(ctx); err != nil {
				s.log.Warn("file upload sweep failed", "err", err)
			}
			cancel()
		}
	}
}

// Sweep finds uploads whose SAS expired before their completion was notified: each is marked
// expired (so a late notification gets 400016), removed from its device's active list, and
// logged once as a FileUploadOperations error with 400016, by whichever node marks it first.
// It returns how many it expired. The sweeper calls it every SweepEvery; tests call it directly.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	type hit struct {
		sess session
		rev  uint64
	}
	var due []hit
	err := s.b.Scan(ctx, []string{"c.*"}, func(e engine.Entry) bool {
		var sess session
		if json.Unmarshal(e.Value, &sess) == nil && !sess.Expired && !now.Before(sess.Expires) {
			due = append(due, hit{sess, e.Revision})
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range due {
		h.sess.Expired = true
		data, _ := json.Marshal(h.sess)
		if _, err := s.b.Update(ctx, sessionKey(h.sess.CorrelationID), data, h.rev); err != nil {
			if errors.Is(err, engine.ErrRevisionMismatch) || errors.Is(err, engine.ErrNotFound) {
				continue // another node, or a completion, got there first
			}
			return n, err
		}
		if err := s.release(ctx, h.sess.DeviceID, h.sess.CorrelationID); err != nil {
			s.log.Warn("could not release an expired upload slot", "device", h.sess.DeviceID, "err", err)
		}
		n++
		s.write(ctx, Failure{
			DeviceID: h.sess.DeviceID, AuthType: h.sess.AuthType, BlobURI: s.cfg.Store.URI(h.sess.BlobName), Operation: OpExpire,
			Duration: h.sess.Expires.Sub(h.sess.Created),
			Err: errcode.New(errcode.ExpiredFileUploadCorrelationId, "the SAS URI of upload %s (%s) expired before the device notified its completion",
				h.sess.CorrelationID, printable(h.sess.BlobName)),
		})
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.Uploads.Completions.WithLabelValues("expired").Inc()
		}
	}
	return n, nil
}

// URI is the URL of a stored blob name as devices see it.
func (s *Service) URI(name string) string { return s.cfg.Store.URI(name) }

// Notifications returns the service-side notification queue, nil when notifications are off.
func (s *Service) Notifications() *Queue { return s.cfg.Queue }

// Files calls fn for the uploaded files of a device ("" for every device), until fn returns
// false. Built-in uploads are listed once committed, external ones once their completion was
// notified.
func (s *Service) Files(ctx context.Context, deviceID string, fn func(blob.Props) bool) error {
	if s.cfg.Index == nil {
		return nil
	}
	return s.cfg.Index.List(ctx, s.cfg.Store.Container(), deviceID, fn)
}

// OpenFile streams an uploaded file ({deviceId}/{name}).
func (s *Service) OpenFile(ctx context.Context, name string) (io.ReadCloser, blob.Props, error) {
	if why := blob.NameProblem(name); why != "" {
		return nil, blob.Props{}, errcode.New(errcode.ArgumentInvalid, "'%s' is not a file name: %s", printable(name), why)
	}
	return s.cfg.Store.OpenReader(ctx, name)
}

// String describes the service's settings, for start-up logs.
func (s *Service) String() string {
	return fmt.Sprintf("file uploads: container %s, SAS TTL %s, %d per device", s.cfg.Store.Container(), s.cfg.SASTTL, s.cfg.MaxActive)
}
