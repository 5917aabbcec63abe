// Package regjobs runs IoT Hub's import/export jobs, the registry half of IoT Hub jobs
// (spec/service-api.md §2.5): an export writes every device identity, with its twin's tags and
// properties, one JSON object a line, into devices.txt of a blob container; an import reads such
// lines, each with an importMode, applies them to the registry and writes what failed into
// importErrors.log. The container is named by a container SAS URI: the hub's built-in blob store
// (internal/blob) or any Azure Blob endpoint (Azure Storage, Azurite).
//
//	svc, err := regjobs.New(ctx, regjobs.Config{Engine: eng, Registry: reg, Twins: twins, Blobs: store, NodeID: "node-a"})
//	defer svc.Close()
//	job, err := svc.Create(ctx, regjobs.Request{Type: "export", OutputBlobContainerURI: uri})
//	job, err = svc.Get(ctx, job.JobID)
//
// Everything durable lives in the engine's regjobs bucket: one record per job (the
// JobProperties IoT Hub answers, plus the node that runs it and until when its lease holds) and
// the key "active", created with a compare-and-set, that names the one import/export job that
// may be enqueued or running at a time in the whole hub (IoT Hub's limit in every tier); a second
// create meanwhile gets 403003 JobQuotaExceeded. Every node polls "active" (the node that
// created the job is woken at once); a node claims an enqueued job, or one whose lease ran out,
// by writing its name and a lease into the record with a compare-and-set, and renews the lease
// while it works, writing the progress at the same time. If the node dies, another takes the job
// over when the lease runs out and runs it again from the start. Any node answers Get, List and
// Cancel from the engine; the node running a cancelled job sees it at its next renewal and stops.
package regjobs

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/twin"
)

// Job types and statuses, as IoT Hub spells them.
const (
	TypeExport = "export"
	TypeImport = "import"

	StatusEnqueued  = "enqueued"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Default blob names.
const (
	DevicesBlob      = "devices.txt"
	ImportErrorsBlob = "importErrors.log"
)

// Job is an import/export job as the service API shows it (JobProperties).
type Job struct {
	JobID                     string     `json:"jobId"`
	StartTimeUTC              *time.Time `json:"startTimeUtc,omitempty"`
	EndTimeUTC                *time.Time `json:"endTimeUtc,omitempty"`
	Type                      string     `json:"type"`
	Status                    string     `json:"status"`
	Progress                  int        `json:"progress"`
	InputBlobContainerURI     string     `json:"inputBlobContainerUri,omitempty"`
	InputBlobName             string     `json:"inputBlobName,omitempty"`
	OutputBlobContainerURI    string     `json:"outputBlobContainerUri,omitempty"`
	OutputBlobName            string     `json:"outputBlobName,omitempty"`
	ExcludeKeysInExport       bool       `json:"excludeKeysInExport"`
	StorageAuthenticationType string     `json:"storageAuthenticationType,omitempty"`
	FailureReason             string     `json:"failureReason,omitempty"`
}

// Terminal reports whether the job has ended.
func (j Job) Terminal() bool {
	return j.Status == StatusCompleted || j.Status == StatusFailed || j.Status == StatusCancelled
}

// Request is the body of POST /jobs/create.
type Request struct {
	Type                      string          `json:"type"`
	InputBlobContainerURI     string          `json:"inputBlobContainerUri"`
	InputBlobName             string          `json:"inputBlobName"`
	OutputBlobContainerURI    string          `json:"outputBlobContainerUri"`
	OutputBlobName            string          `json:"outputBlobName"`
	ExcludeKeysInExport       json.RawMessage `json:"excludeKeysInExport"`
	StorageAuthenticationType string          `json:"storageAuthenticationType"`
}

// Config configures a [Service].
type Config struct {
	Engine   *engine.Engine
	Registry *registry.Registry
	// Twins, when set, exports each device's tags and properties and imports tags and desired
	// properties.
	Twins *twin.Store
	// Blobs, when set, is the built-in blob store: container URIs that name it are served
	// through it directly, without a request to the hub's own HTTPS endpoint.
	Blobs *blob.Local
	// NodeID names this node in leases.
	NodeID string
	// HTTPClient reaches external blob endpoints. Nil means a client with a 5-minute timeout.
	HTTPClient *http.Client
	// Lease is how long a node holds a job without renewing it. Zero means 30 s; the node renews
	// every third of it.
	Lease time.Duration
	// Poll is how often an idle node looks for a job to run. Zero means 2 s.
	Poll   time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Service creates, runs and answers import/export jobs.
type Service struct {
	cfg    Config
	b      *engine.Bucket
	log    *slog.Logger
	wake   chan struct{}
	stop   context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	active string // the job this node is running, if any
}

const (
	bucketName = "regjobs"
	activeKey  = "active"
	history    = 30 * 24 * time.Hour // IoT Hub keeps a job's record 30 days
)

func jobKey(id string) string { return "job." + id }

// stored is a job's record in the engine.
type stored struct {
	Job        Job    `json:"job"`
	Node       string `json:"node,omitempty"`
	LeaseUntil int64  `json:"leaseUntil,omitempty"` // unix nanoseconds
}

// New opens the engine state and starts this node's runner.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Engine == nil || cfg.Registry == nil {
		return nil, errors.New("regjobs: an engine and a registry are required")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Minute}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := cfg.Engine.KV(ctx, engine.BucketConfig{Name: bucketName, Description: "import/export jobs", TTL: history})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{cfg: cfg, b: b, log: cfg.Logger.With("component", "regjobs"), wake: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go s.run(rctx)
	return s, nil
}

// Close stops the runner. A job this node was running is left to its lease: another node takes
// it over when the lease runs out.
func (s *Service) Close() {
	if s == nil {
		return
	}
	s.stop()
	<-s.done
}

func newJobID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Create validates a job request, stores the job as enqueued and wakes a runner. It fails with
// 403003 JobQuotaExceeded while another import/export job is enqueued or running.
func (s *Service) Create(ctx context.Context, req Request) (Job, error) {
	job, err := s.check(req)
	if err != nil {
		return Job{}, err
	}
	job.JobID = newJobID()
	now := s.cfg.Now().UTC()
	job.StartTimeUTC = &now
	job.Status = StatusEnqueued
	val, _ := json.Marshal(stored{Job: job})
	if _, err := s.b.Create(ctx, jobKey(job.JobID), val); err != nil {
		return Job{}, errcode.Wrap(errcode.ServerError, err, "could not store the job")
	}
	if err := s.takeSlot(ctx, job.JobID); err != nil {
		_ = s.b.Delete(context.WithoutCancel(ctx), jobKey(job.JobID), 0)
		return Job{}, err
	}
	s.poke()
	return job, nil
}

// takeSlot makes the job the hub's one active import/export job.
func (s *Service) takeSlot(ctx context.Context, id string) error {
	for range 5 {
		_, err := s.b.Create(ctx, activeKey, []byte(id))
		if err == nil {
			return nil
		}
		if !errors.Is(err, engine.ErrExists) {
			return errcode.Wrap(errcode.ServerError, err, "could not reserve the import/export slot")
		}
		ent, err := s.b.Get(ctx, activeKey)
		if errors.Is(err, engine.ErrNotFound) {
			continue
		}
		if err != nil {
			return errcode.Wrap(errcode.ServerError, err, "could not read the import/export slot")
		}
		// The slot may name a job that ended (its node stopped between the two writes) or whose
		// record is gone: free it then.
		other, _, gerr := s.load(ctx, string(ent.Value))
		if gerr == nil && !other.Job.Terminal() {
			return errcode.New(errcode.JobQuotaExceeded,
				"import/export job %s is %s: a hub runs one import/export job at a time; wait for it to end or cancel it", other.Job.JobID, other.Job.Status)
		}
		_ = s.b.Delete(ctx, activeKey, ent.Revision)
	}
	return errcode.New(errcode.ServerError, "the import/export slot is too contended, retry")
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// check turns a request into a job, or returns the IoT Hub error for a bad one.
func (s *Service) check(req Request) (Job, error) {
	job := Job{Type: strings.ToLower(strings.TrimSpace(req.Type)), StorageAuthenticationType: req.StorageAuthenticationType}
	if ex := strings.TrimSpace(string(req.ExcludeKeysInExport)); ex != "" && ex != "null" {
		// The Node SDK sends the argument as given: a boolean, or a string in older samples.
		var b bool
		if err := json.Unmarshal(req.ExcludeKeysInExport, &b); err != nil {
			var str string
			if json.Unmarshal(req.ExcludeKeysInExport, &str) != nil || (str != "true" && str != "false") {
				return Job{}, errcode.New(errcode.ArgumentInvalid, "excludeKeysInExport must be true or false")
			}
			b = str == "true"
		}
		job.ExcludeKeysInExport = b
	}
	if strings.EqualFold(req.StorageAuthenticationType, "identityBased") {
		return Job{}, errcode.New(errcode.ArgumentInvalid,
			"storageAuthenticationType identityBased needs a managed identity, which Roost has not: give a container SAS URI (keyBased)")
	}
	switch job.Type {
	case TypeExport:
		if req.OutputBlobContainerURI == "" {
			return Job{}, errcode.New(errcode.ArgumentNull, "an export job needs outputBlobContainerUri")
		}
		job.OutputBlobName = orDefault(req.OutputBlobName, DevicesBlob)
	case TypeImport:
		if req.InputBlobContainerURI == "" || req.OutputBlobContainerURI == "" {
			return Job{}, errcode.New(errcode.ArgumentNull, "an import job needs inputBlobContainerUri and outputBlobContainerUri")
		}
		if _, err := parseContainer(req.InputBlobContainerURI); err != nil {
			return Job{}, err
		}
		job.InputBlobContainerURI = req.InputBlobContainerURI
		job.InputBlobName = orDefault(req.InputBlobName, DevicesBlob)
		job.OutputBlobName = orDefault(req.OutputBlobName, ImportErrorsBlob)
		if err := blob.CheckName(job.InputBlobName); err != nil {
			return Job{}, errcode.New(errcode.ArgumentInvalid, "inputBlobName: %s", blob.NameProblem(job.InputBlobName))
		}
	case "":
		return Job{}, errcode.New(errcode.ArgumentNull, "the job needs a type: export or import")
	default:
		return Job{}, errcode.New(errcode.ArgumentInvalid, "job type '%s' is not supported here: use export or import (scheduled jobs are under /jobs/v2)", printable(req.Type))
	}
	if _, err := parseContainer(req.OutputBlobContainerURI); err != nil {
		return Job{}, err
	}
	job.OutputBlobContainerURI = req.OutputBlobContainerURI
	if err := blob.CheckName(job.OutputBlobName); err != nil {
		return Job{}, errcode.New(errcode.ArgumentInvalid, "outputBlobName: %s", blob.NameProblem(job.OutputBlobName))
	}
	return job, nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// printable bounds untrusted text quoted in an error message.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// parseContainer checks a container SAS URI: http(s), a host, a container in the path.
func parseContainer(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return nil, errcode.New(errcode.InvalidStorageEndpoint,
			"'%s' is not a blob container URI: use https://{account}.blob.core.windows.net/{container}?{container SAS}", printable(redact(raw)))
	}
	return u, nil
}

// redact drops a URI's query (its SAS signature) for messages and logs.
func redact(raw string) string {
	before, _, _ := strings.Cut(raw, "?")
	return before
}

func (s *Service) load(ctx context.Context, id string) (stored, uint64, error) {
	ent, err := s.b.Get(ctx, jobKey(id))
	if errors.Is(err, engine.ErrNotFound) {
		return stored{}, 0, errcode.New(errcode.JobNotFound, "job %s does not exist (import/export jobs are kept 30 days)", printable(id))
	}
	if err != nil {
		return stored{}, 0, errcode.Wrap(errcode.ServerError, err, "could not read the job")
	}
	var st stored
	if err := json.Unmarshal(ent.Value, &st); err != nil {
		return stored{}, 0, errcode.Wrap(errcode.ServerError, err, "the job's record is damaged")
	}
	return st, ent.Revision, nil
}

// Get returns a job; 404002 JobNotFound for an unknown id.
func (s *Service) Get(ctx context.Context, id string) (Job, error) {
	if !validID(id) {
		return Job{}, errcode.New(errcode.JobNotFound, "job %s does not exist", printable(id))
	}
	st, _, err := s.load(ctx, id)
	return st.Job, err
}

// validID accepts the ids this service makes: hex digits and dashes. Anything else cannot name a
// job, and must not reach a key.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == '-') {
			return false
		}
	}
	return true
}

// List returns the import/export jobs of the last 30 days, oldest first.
func (s *Service) List(ctx context.Context) ([]Job, error) {
	out := []Job{}
	err := s.b.Scan(ctx, []string{"job.*"}, func(e engine.Entry) bool {
		var st stored
		if json.Unmarshal(e.Value, &st) == nil {
			out = append(out, st.Job)
		}
		return true
	})
	if err != nil {
		return nil, errcode.Wrap(errcode.ServerError, err, "could not list the jobs")
	}
	sort.SliceStable(out, func(i, k int) bool {
		a, b := out[i].StartTimeUTC, out[k].StartTimeUTC
		if a == nil || b == nil {
			return a == nil && b != nil
		}
		return a.Before(*b)
	})
	return out, nil
}

// Cancel cancels an enqueued or running job and returns it; a job that has ended is returned
// as it is. What a cancelled import already applied stays applied.
func (s *Service) Cancel(ctx context.Context, id string) (Job, error) {
	if !validID(id) {
		return Job{}, errcode.New(errcode.JobNotFound, "job %s does not exist", printable(id))
	}
	st, err := s.update(ctx, id, func(st *stored) bool {
		if st.Job.Terminal() {
			return false
		}
		now := s.cfg.Now().UTC()
		st.Job.Status, st.Job.EndTimeUTC = StatusCancelled, &now
		st.Node, st.LeaseUntil = "", 0
		return true
	})
	if err != nil {
		return Job{}, err
	}
	s.releaseSlot(ctx, id)
	return st.Job, nil
}

// update applies change to a job's record with compare-and-set, retrying on conflicts. change
// returns false to leave the record as it is.
func (s *Service) update(ctx context.Context, id string, change func(*stored) bool) (stored, error) {
	for range 20 {
		st, rev, err := s.load(ctx, id)
		if err != nil {
			return stored{}, err
		}
		if !change(&st) {
			return st, nil
		}
		val, _ := json.Marshal(st)
		if _, err := s.b.Update(ctx, jobKey(id), val, rev); err == nil {
			return st, nil
		} else if !errors.Is(err, engine.ErrRevisionMismatch) && !errors.Is(err, engine.ErrExists) {
			return stored{}, errcode.Wrap(errcode.ServerError, err, "could not update the job")
		}
	}
	return stored{}, errcode.New(errcode.ServerError, "the job's record is too contended, retry")
}

// releaseSlot frees the active slot if it names the job.
func (s *Service) releaseSlot(ctx context.Context, id string) {
	ent, err := s.b.Get(ctx, activeKey)
	if err == nil && string(ent.Value) == id {
		_ = s.b.Delete(context.WithoutCancel(ctx), activeKey, ent.Revision)
	}
}
