package jobs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/query"
	"github.com/roost-iot/roost/internal/throttle"
	"github.com/roost-iot/roost/internal/twin"
)

// Clock tells the time. Tests pass a fake one to move a scheduled job's start, its
// maxExecutionTimeInSeconds and the history's retention without waiting.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config wires the service to the hub.
type Config struct {
	Engine *engine.Engine
	// Twins applies twin update jobs.
	Twins *twin.Store
	// Methods calls the methods of method jobs.
	Methods *methods.Service
	// Devices reads the device twins a job's condition is evaluated over.
	Devices query.Source
	// Throttle enforces the tier: the jobs operation rate, the jobs per-device rate, the basic
	// tiers' refusal and the limit on active jobs. Nil is the unlimited hub.
	Throttle *throttle.Throttler
	// Diag receives the JobsOperations records of jobs that end. Nil writes none.
	Diag *diag.Writer
	// Metrics receives the jobs.* counters. Nil makes a private set.
	Metrics *metrics.Metrics
	// NodeID names this node in the leases of the jobs it runs.
	NodeID string
	// MaxActive caps the jobs that may be active (queued, scheduled or running) at once. Zero
	// means the tier's limit (1 on F1 and S1, 5 on S2, 10 on S3), and on the unlimited hub
	// [MaxActiveUnlimited].
	MaxActive int
	// Retention is how long an ended job and its device rows are kept. Zero means 30 days.
	Retention time.Duration
	// LeaseTTL is how long a node's claim on a job lasts without renewal: when the node dies,
	// another takes the job over after at most this long. Zero means 15 s.
	LeaseTTL time.Duration
	// PollInterval is how often each node looks for due jobs, and how often a running job's
	// lease and statistics are written. Zero means 1 s.
	PollInterval time.Duration
	// PurgeInterval is how often ended jobs past Retention are removed. Zero means 1 hour.
	PurgeInterval time.Duration
	// Workers is how many devices of one job are worked on at once. Zero means 16.
	Workers int
	// Clock tells the time. Nil means the real clock.
	Clock  Clock
	Logger *slog.Logger
}

// MaxActiveUnlimited bounds the active jobs of the unlimited hub, which has no tier limit: the
// list of active jobs is one engine value, and this keeps it well under the engine's 1 MB.
const MaxActiveUnlimited = 1000

// Caller describes the request that created a job, for its JobsOperations records.
type Caller struct {
	// APIVersion is the request's api-version (the records' sdkVersion).
	APIVersion string
}

// Service creates, runs, lists and cancels jobs. It is safe for concurrent use.
type Service struct {
	cfg    Config
	log    *slog.Logger
	bucket *engine.Bucket
	m      *metrics.JobMetrics

	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}
	subs   []*engine.Subscription
	mu     sync.Mutex
	active map[string]context.CancelCauseFunc // jobs this node runs
}

const (
	bucketName = "jobsv2"
	activeKey  = "active"
)

func recordKey(id string) string { return "j." + engine.EncodeToken(id) }
func rowKey(id, device string) string {
	return "r." + engine.EncodeToken(id) + "." + engine.EncodeToken(device)
}
func rowFilter(id string) string { return "r." + engine.EncodeToken(id) + ".*" }

// record is a job as the engine keeps it: the JobResponse and what the cluster needs to run it.
type record struct {
	Job
	// Owner is the node running the job; empty when no node does.
	Owner string `json:"owner,omitempty"`
	// LeaseUntil is when Owner's claim ends unless renewed.
	LeaseUntil time.Time `json:"leaseUntil,omitzero"`
	// Targeted is set once a row exists for every device the condition selected.
	Targeted bool `json:"targeted,omitempty"`
	// RunStart is when the job started running (maxExecutionTimeInSeconds counts from it).
	RunStart time.Time `json:"runStart,omitzero"`
	// IfMatch is a twin job's etag, applied to every device's twin.
	IfMatch string `json:"ifMatch,omitempty"`
	// SDKVersion and MessageSize describe the create request, for the jobCompleted record.
	SDKVersion  string `json:"sdkVersion,omitempty"`
	MessageSize int    `json:"messageSize,omitempty"`
}

// New opens the jobs bucket and starts this node's scheduler. Close stops it.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Engine == nil || cfg.Twins == nil || cfg.Methods == nil || cfg.Devices == nil {
		return nil, errors.New("jobs: Engine, Twins, Methods and Devices are required")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 15 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.PurgeInterval <= 0 {
		cfg.PurgeInterval = time.Hour
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "node"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, err := cfg.Engine.KV(ctx, engine.BucketConfig{Name: bucketName, Description: "jobs v2: records, device rows, active list"})
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log.With("component", "jobs"), bucket: b, m: &cfg.Metrics.Jobs,
		wake: make(chan struct{}, 1), active: map[string]context.CancelCauseFunc{}}
	s.ctx, s.stop = context.WithCancel(context.Background())
	for kind, h := range map[string]engine.Handler{
		"wake":   func(engine.Inbound) { s.poke() },
		"cancel": func(in engine.Inbound) { s.stopLocal(string(in.Data), errCancelled) },
	} {
		sub, err := cfg.Engine.Subscribe(engine.JobsSubject(kind), h)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.subs = append(s.subs, sub)
	}
	s.wg.Add(1)
	go s.loop()
	return s, nil
}

// Close stops the scheduler and the jobs this node runs. A running job is released (its lease
// given up and the other nodes woken), so another node goes on with it at once.
func (s *Service) Close() {
	for _, sub := range s.subs {
		sub.Unsubscribe()
	}
	s.subs = nil
	s.stop()
	s.wg.Wait()
}

func (s *Service) now() time.Time { return s.cfg.Clock.Now().UTC() }

// poke wakes this node's scheduler.
func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wakeAll wakes the scheduler of every node.
func (s *Service) wakeAll() {
	_ = s.cfg.Engine.PublishCore(engine.JobsSubject("wake"), nil)
	s.poke()
}

// Running reports the ids of the jobs this node runs now.
func (s *Service) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.active))
	for id := range s.active {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// admit applies the tier to a jobs operation: no jobs on the basic tiers (403010), then the
// jobs operation rate with traffic shaping (429001 when the backlog is full).
func (s *Service) admit(ctx context.Context) error {
	th := s.cfg.Throttle
	if th == nil {
		return nil
	}
	if err := th.JobsFeature(); err != nil {
		return err
	}
	err := th.Wait(ctx, throttle.Jobs, 1)
	if errcode.Is(err, errcode.ThrottlingException) {
		s.cfg.Metrics.Throttle.Errors.WithLabelValues(throttle.Jobs.String()).Inc()
	}
	return err
}

// maxActive is the limit on active jobs.
func (s *Service) maxActive() int {
	if s.cfg.MaxActive > 0 {
		return s.cfg.MaxActive
	}
	if n := s.cfg.Throttle.MaxActiveJobs(); n > 0 {
		return n
	}
	return MaxActiveUnlimited
}

// Create schedules a job from a PUT /jobs/v2/{id} body and returns it as IoT Hub answers the
// request: with status "queued", whether it starts now or later (GET shows "scheduled" until a
// later start). Errors: 400004/400005/400006 for a bad request or condition, 409104
// JobAlreadyExists, 429004 ThrottlingMaxActiveJobCountExceeded when the tier's active jobs are
// all taken, 403010 on a basic tier, 429001 when the jobs operation rate is exceeded.
func (s *Service) Create(ctx context.Context, id string, body []byte, c Caller) (Job, error) {
	typ := sniffType(body)
	job, err := s.create(ctx, id, body, c)
	switch typ {
	case TypeDeviceMethod:
		count(s.m.CreateMethodSuccess, s.m.CreateMethodFailure, err)
	case TypeUpdateTwin:
		count(s.m.CreateTwinSuccess, s.m.CreateTwinFailure, err)
	}
	return job, err
}

func (s *Service) create(ctx context.Context, id string, body []byte, c Caller) (Job, error) {
	if err := s.admit(ctx); err != nil {
		return Job{}, err
	}
	sp, err := decodeSpec(id, body)
	if err != nil {
		return Job{}, err
	}
	if _, err := s.bucket.Get(ctx, recordKey(id)); err == nil {
		return Job{}, errAlreadyExists(id)
	} else if !errors.Is(err, engine.ErrNotFound) {
		return Job{}, engineError(err)
	}
	now := s.now()
	rec := record{Job: Job{
		JobID: id, QueryCondition: sp.condition, CreatedTime: now, StartTime: now,
		MaxExecutionTimeInSeconds: int64(sp.maxExec / time.Second), Type: sp.typ,
		CloudToDeviceMethod: sp.method, UpdateTwin: sp.updateTwin, Status: StatusQueued,
	}, IfMatch: sp.ifMatch, SDKVersion: c.APIVersion, MessageSize: sp.messageSize}
	if sp.start != nil && sp.start.After(now) {
		rec.StartTime = *sp.start
		rec.Status = StatusScheduled
	}
	// The record first, then its place among the active jobs: a scheduler that finds an active
	// id without a record drops it.
	b, _ := json.Marshal(rec)
	rev, err := s.bucket.Create(ctx, recordKey(id), b)
	if err != nil {
		if errors.Is(err, engine.ErrExists) {
			return Job{}, errAlreadyExists(id)
		}
		return Job{}, engineError(err)
	}
	if err := s.addActive(ctx, id); err != nil {
		dctx, cancel := bg()
		_ = s.bucket.Delete(dctx, recordKey(id), rev)
		cancel()
		return Job{}, err
	}
	s.wakeAll()
	out := rec.Job
	out.Status = StatusQueued // what IoT Hub answers to the PUT, even for a later start
	return out, nil
}

func errAlreadyExists(id string) error {
	return errcode.New(errcode.JobAlreadyExists, "a job with id '%s' already exists (ended jobs are kept for the history's retention)", id)
}

func errNotFound(id string) error {
	return errcode.New(errcode.JobNotFound, "no job with id '%s' exists", id)
}

func engineError(err error) error {
	if e := (*errcode.Error)(nil); errors.As(err, &e) {
		return e
	}
	return errcode.Wrap(errcode.ServerError, err, "the jobs store could not be reached")
}

// sniffType reads a request body's type, for the metrics of a create that fails.
func sniffType(body []byte) string {
	var raw struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(body, &raw)
	switch {
	case strings.EqualFold(raw.Type, TypeDeviceMethod):
		return TypeDeviceMethod
	case strings.EqualFold(raw.Type, TypeUpdateTwin):
		return TypeUpdateTwin
	}
	return ""
}

func count(ok, fail interface{ Inc() }, err error) {
	if err != nil {
		fail.Inc()
		return
	}
	ok.Inc()
}

// load reads a job's record and its revision.
func (s *Service) load(ctx context.Context, id string) (record, uint64, error) {
	ent, err := s.bucket.Get(ctx, recordKey(id))
	if errors.Is(err, engine.ErrNotFound) {
		return record{}, 0, errNotFound(id)
	}
	if err != nil {
		return record{}, 0, engineError(err)
	}
	var rec record
	if err := json.Unmarshal(ent.Value, &rec); err != nil {
		return record{}, 0, errcode.Wrap(errcode.ServerError, err, "the stored job '%s' could not be read", id)
	}
	return rec, ent.Revision, nil
}

// update applies change to the job's record with a compare-and-set, retrying lost races.
// change returns false to leave the record as it is.
func (s *Service) update(ctx context.Context, id string, change func(*record) (bool, error)) (record, error) {
	for attempt := 0; ; attempt++ {
		rec, rev, err := s.load(ctx, id)
		if err != nil {
			return record{}, err
		}
		ok, err := change(&rec)
		if err != nil || !ok {
			return rec, err
		}
		b, _ := json.Marshal(rec)
		_, err = s.bucket.Update(ctx, recordKey(id), b, rev)
		if err == nil {
			return rec, nil
		}
		if !errors.Is(err, engine.ErrRevisionMismatch) || attempt >= 20 {
			return record{}, engineError(err)
		}
	}
}

// Get returns a job. 404002 JobNotFound when there is none (or it was purged).
func (s *Service) Get(ctx context.Context, id string) (Job, error) {
	if err := s.admit(ctx); err != nil {
		return Job{}, err
	}
	if err := CheckID(id); err != nil {
		return Job{}, err
	}
	rec, _, err := s.load(ctx, id)
	return rec.Job, err
}

// Cancel cancels a queued, scheduled or running job: its status becomes "cancelled" at once,
// the node running it stops within a round trip, and the devices it had not reached get the
// row status "canceled". Cancelling a job that has ended changes nothing and returns it.
func (s *Service) Cancel(ctx context.Context, id string) (Job, error) {
	job, err := s.cancel(ctx, id)
	count(s.m.CancelSuccess, s.m.CancelFailure, err)
	return job, err
}

func (s *Service) cancel(ctx context.Context, id string) (Job, error) {
	if err := s.admit(ctx); err != nil {
		return Job{}, err
	}
	if err := CheckID(id); err != nil {
		return Job{}, err
	}
	now := s.now()
	rec, err := s.update(ctx, id, func(r *record) (bool, error) {
		if r.Terminal() {
			return false, nil
		}
		r.Status = StatusCancelled
		r.EndTime = &now
		if r.Owner == "" {
			// Nobody runs it: its rows (if it ever started) are settled here, as canceled.
			st := &r.DeviceJobStatistics
			st.FailedCount += st.PendingCount + st.RunningCount
			st.PendingCount, st.RunningCount = 0, 0
		}
		return true, nil
	})
	if err != nil {
		return Job{}, err
	}
	if rec.Status == StatusCancelled && rec.EndTime != nil && rec.EndTime.Equal(now) {
		_ = s.cfg.Engine.PublishCore(engine.JobsSubject("cancel"), []byte(id))
		s.stopLocal(id, errCancelled)
		if rec.Owner == "" {
			s.settleRows(context.WithoutCancel(ctx), rec, DeviceCanceled, nil)
			s.removeActive(context.WithoutCancel(ctx), id)
			s.finishRecord(rec)
		}
	}
	return rec.Job, nil
}

// ListRequest selects jobs for [Service.List].
type ListRequest struct {
	// Type keeps jobs of this type only; empty keeps all.
	Type string
	// Status keeps jobs in this status only; empty keeps all.
	Status string
	// PageSize is the most jobs returned. Zero means 100; at most 1000.
	PageSize int
	// Continuation is the previous page's token.
	Continuation string
}

// List returns a page of jobs in id order, and the next page's token ("" on the last page).
func (s *Service) List(ctx context.Context, req ListRequest) ([]Job, string, error) {
	jobs, next, err := s.list(ctx, req)
	count(s.m.QuerySuccess, s.m.QueryFailure, err)
	return jobs, next, err
}

const tokenPrefix = "j1."

func (s *Service) list(ctx context.Context, req ListRequest) ([]Job, string, error) {
	if err := s.admit(ctx); err != nil {
		return nil, "", err
	}
	size := req.PageSize
	if size <= 0 {
		size = query.DefaultPageSize
	}
	size = min(size, query.MaxPageSize)
	after := ""
	if req.Continuation != "" {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(req.Continuation, tokenPrefix))
		if err != nil || !strings.HasPrefix(req.Continuation, tokenPrefix) || len(b) == 0 {
			return nil, "", errcode.New(errcode.ArgumentInvalid, "the continuation token is not valid: pass the x-ms-continuation value of the previous page unchanged")
		}
		after = string(b)
	}
	var all []Job
	var ferr error
	err := s.bucket.Scan(ctx, []string{"j.*"}, func(e engine.Entry) bool {
		var rec record
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			ferr = errcode.Wrap(errcode.ServerError, err, "a stored job could not be read")
			return false
		}
		if req.Type != "" && !strings.EqualFold(rec.Type, req.Type) {
			return true
		}
		if req.Status != "" && !strings.EqualFold(rec.Status, req.Status) {
			return true
		}
		if after != "" && rec.JobID <= after {
			return true
		}
		all = append(all, rec.Job)
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, "", engineError(err)
	}
	slices.SortFunc(all, func(a, b Job) int { return strings.Compare(a.JobID, b.JobID) })
	next := ""
	if len(all) > size {
		all = all[:size]
		next = tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(all[size-1].JobID))
	}
	if all == nil {
		all = []Job{}
	}
	return all, next, nil
}

// Rows is the query language's devices.jobs collection: it calls fn with every device row of
// every job kept, as a JSON document, until fn returns false. It has the shape of a
// [query.Source]; modules must be false (IoT Hub has no module rows).
func (s *Service) Rows(ctx context.Context, modules bool, fn func(doc map[string]any) bool) error {
	if modules {
		return nil
	}
	var ferr error
	err := s.bucket.Scan(ctx, []string{"r.*.*"}, func(e engine.Entry) bool {
		var doc map[string]any
		if err := json.Unmarshal(e.Value, &doc); err != nil {
			ferr = errcode.Wrap(errcode.ServerError, err, "a stored job row could not be read")
			return false
		}
		return fn(doc)
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return engineError(err)
	}
	return nil
}

// activeList is the engine's list of jobs that are queued, scheduled or running.
type activeList struct {
	IDs []string `json:"ids"`
}

// addActive adds a job to the active list unless the list is full (429004). A full list is
// first checked for jobs that ended without leaving it (a node that died at the wrong moment).
func (s *Service) addActive(ctx context.Context, id string) error {
	limit := s.maxActive()
	cleaned := false
	for attempt := 0; attempt < 50; attempt++ {
		var list activeList
		ent, err := s.bucket.Get(ctx, activeKey)
		exists := err == nil
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return engineError(err)
		}
		if exists {
			if err := json.Unmarshal(ent.Value, &list); err != nil {
				return errcode.Wrap(errcode.ServerError, err, "the list of active jobs could not be read")
			}
		}
		if slices.Contains(list.IDs, id) {
			return nil
		}
		if len(list.IDs) >= limit {
			if cleaned {
				return errcode.New(errcode.ThrottlingMaxActiveJobCountExceeded,
					"%d jobs are active and the hub allows %d at once: wait for one to end or cancel one", len(list.IDs), limit)
			}
			s.dropEnded(ctx)
			cleaned = true
			continue
		}
		list.IDs = append(list.IDs, id)
		b, _ := json.Marshal(list)
		if exists {
			_, err = s.bucket.Update(ctx, activeKey, b, ent.Revision)
		} else {
			_, err = s.bucket.Create(ctx, activeKey, b)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, engine.ErrRevisionMismatch) && !errors.Is(err, engine.ErrExists) {
			return engineError(err)
		}
	}
	return errcode.New(errcode.ServerError, "the list of active jobs is too busy to change: retry")
}

// removeActive takes a job off the active list.
func (s *Service) removeActive(ctx context.Context, id string) {
	s.editActive(ctx, func(ids []string) []string {
		return slices.DeleteFunc(ids, func(x string) bool { return x == id })
	})
}

// dropEnded takes every job that has ended, or no longer exists, off the active list.
func (s *Service) dropEnded(ctx context.Context) {
	ids, err := s.activeIDs(ctx)
	if err != nil {
		return
	}
	var gone []string
	for _, id := range ids {
		rec, _, err := s.load(ctx, id)
		if errcode.Is(err, errcode.JobNotFound) || (err == nil && rec.Terminal()) {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return
	}
	s.editActive(ctx, func(ids []string) []string {
		return slices.DeleteFunc(ids, func(x string) bool { return slices.Contains(gone, x) })
	})
}

func (s *Service) editActive(ctx context.Context, edit func([]string) []string) {
	for attempt := 0; attempt < 50; attempt++ {
		ent, err := s.bucket.Get(ctx, activeKey)
		if err != nil {
			return
		}
		var list activeList
		if json.Unmarshal(ent.Value, &list) != nil {
			return
		}
		n := len(list.IDs)
		list.IDs = edit(list.IDs)
		if len(list.IDs) == n {
			return
		}
		b, _ := json.Marshal(list)
		if _, err := s.bucket.Update(ctx, activeKey, b, ent.Revision); err == nil || !errors.Is(err, engine.ErrRevisionMismatch) {
			return
		}
	}
}

func (s *Service) activeIDs(ctx context.Context) ([]string, error) {
	var list activeList
	ok, err := s.bucket.GetJSON(ctx, activeKey, &list)
	if err != nil || !ok {
		return nil, err
	}
	return list.IDs, nil
}

// Purge removes the jobs that ended more than the retention ago, with their device rows. The
// scheduler calls it every PurgeInterval; it returns how many jobs it removed.
func (s *Service) Purge(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-s.cfg.Retention)
	var old []string
	err := s.bucket.Scan(ctx, []string{"j.*"}, func(e engine.Entry) bool {
		var rec record
		if json.Unmarshal(e.Value, &rec) == nil && rec.Terminal() && rec.EndTime != nil && rec.EndTime.Before(cutoff) {
			old = append(old, rec.JobID)
		}
		return true
	})
	if err != nil {
		return 0, engineError(err)
	}
	for _, id := range old {
		var keys []string
		if err := s.bucket.Scan(ctx, []string{rowFilter(id)}, func(e engine.Entry) bool { keys = append(keys, e.Key); return true }); err != nil {
			return 0, engineError(err)
		}
		for _, k := range keys {
			if err := s.bucket.Delete(ctx, k, 0); err != nil && !errors.Is(err, engine.ErrNotFound) {
				return 0, engineError(err)
			}
		}
		if err := s.bucket.Delete(ctx, recordKey(id), 0); err != nil && !errors.Is(err, engine.ErrNotFound) {
			return 0, engineError(err)
		}
	}
	return len(old), nil
}
