// Package diag writes the hub's diagnostic logs: records in the Azure resource-log shape that
// users query to learn why an operation failed, as IoT Hub's diagnostic settings deliver them.
//
// Records are data, not process logs: they are appended to an engine stream (one subject per
// category) and kept for a retention period. Emitters build a [Record] and hand it to
// [Writer.Write]:
//
//	w.Write(diag.Record{
//		Category:      diag.DeviceIdentityOperations,
//		OperationName: "create",
//		Err:           err, // nil for success
//		Properties:    map[string]any{"deviceId": id, "maskedIpAddress": diag.MaskIP(ip)},
//	})
//
// A failed operation becomes a record at level Error whose resultType is the six-digit code and
// whose resultDescription is the name the troubleshooting guide uses.
//
// Every category's operation names and property keys are defined once, in [Categories]; use
// the Op constants (OpDeviceConnect, OpMessageExpired, ...) rather than string literals, and
// [Check] in tests to keep records in shape.
//
// Records are stored under diag.<Category>.<Level>, each with an id the engine deduplicates,
// so a record is stored at most once even when a write is retried. [Table] reads them back as
// the AzureDiagnostics table of the kql package, narrowing the read by time (the engine's time
// index), category and level; [ReadFiles] reads diagnostic logs exported from an Azure IoT hub
// into the same table; [Exporter] ships records to stdout, a file or an HTTP endpoint as
// diagnostic settings do.
package diag

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// Categories of IoT Hub resource logs.
const (
	Connections              = "Connections"
	DeviceTelemetry          = "DeviceTelemetry"
	C2DCommands              = "C2DCommands"
	DeviceIdentityOperations = "DeviceIdentityOperations"
	FileUploadOperations     = "FileUploadOperations"
	Routes                   = "Routes"
	D2CTwinOperations        = "D2CTwinOperations"
	C2DTwinOperations        = "C2DTwinOperations"
	TwinQueries              = "TwinQueries"
	JobsOperations           = "JobsOperations"
	DirectMethods            = "DirectMethods"
	DistributedTracing       = "DistributedTracing"
	Configurations           = "Configurations"
	DeviceStreams            = "DeviceStreams"
)

// Levels used by IoT Hub records.
const (
	LevelInformation = "Information"
	LevelError       = "Error"
	LevelWarning     = "Warning"
	LevelCritical    = "Critical"
)

// InjectedFault marks an error that fault injection caused: a record whose Err wraps one gets
// the properties faultInjected "true" and faultRule, so an injected failure is logged exactly
// like a real one and can still be told apart.
type InjectedFault struct {
	// Rule is the id of the fault injection rule.
	Rule string
	// Description, when set, replaces the resultDescription the code would give (for failures
	// IoT Hub reports without a code of their own, such as InternalServerError).
	Description string
}

func (f *InjectedFault) Error() string { return "injected fault (rule " + f.Rule + ")" }

// Record is one diagnostic log record. Fields left empty are filled by the [Writer].
type Record struct {
	// Time is when the operation happened; zero means now. Queries find records through the
	// engine's stored time, so a record must be written within minutes of its Time (as every
	// emitter does) to be found by a time-bounded query.
	Time          time.Time
	Category      string
	OperationName string
	// Level is LevelError when Err is set, else LevelInformation, unless set explicitly.
	Level string
	// Err, when set, gives ResultType (the code) and ResultDescription (the guide's name).
	Err error
	// ResultType and ResultDescription override what Err gives.
	ResultType        string
	ResultDescription string
	// DurationMs is written as a string, as IoT Hub does; negative means absent.
	DurationMs    int64
	CorrelationID string
	CallerIP      string
	// Properties is the category-specific bag; it is stored JSON-encoded as a string.
	Properties map[string]any
}

// Wire is the stored and exported shape of a record (Azure resource-log schema).
type Wire struct {
	Time              string `json:"time"`
	ResourceID        string `json:"resourceId"`
	OperationName     string `json:"operationName"`
	Category          string `json:"category"`
	Level             string `json:"level"`
	ResultType        string `json:"resultType,omitempty"`
	ResultDescription string `json:"resultDescription,omitempty"`
	DurationMs        string `json:"durationMs,omitempty"`
	CallerIPAddress   string `json:"callerIpAddress,omitempty"`
	CorrelationID     string `json:"correlationId,omitempty"`
	Properties        string `json:"properties"`
	Location          string `json:"location"`
}

// Config configures a [Writer].
type Config struct {
	// ResourceID is the hub's ARM-style id, upper-case, as IoT Hub writes it.
	ResourceID string
	// Location is the region name written in every record. Empty means "local".
	Location string
	// Retention is how long records are kept. Zero means 7 days.
	Retention time.Duration
	// MaxBytes caps the stored records; the oldest go first. Zero means 1 GiB.
	MaxBytes int64
	// Buffer is how many records may wait to be stored. Zero means 4096. When full, Write waits.
	Buffer int
	Logger *slog.Logger
}

// StreamName and SubjectPrefix name where records are kept in the engine.
const (
	StreamName    = "DIAG"
	SubjectPrefix = "diag."
)

// Writer appends records to the engine in the background, in order, each at most once.
type Writer struct {
	cfg  Config
	eng  *engine.Engine
	log  *slog.Logger
	ch   chan item
	done chan struct{} // closed when run has stored everything

	mu     sync.RWMutex // guards closed; held for reading while sending on ch
	closed bool

	idPrefix string
	seq      atomic.Uint64
	dropped  atomic.Int64

	now func() time.Time
}

// item is a record on its way to the engine, or a flush marker.
type item struct {
	rec   Wire
	flush chan struct{}
}

// Subject returns the engine subject a record of the category and level is stored under.
func Subject(category, level string) string {
	return SubjectPrefix + token(category) + "." + token(level)
}

// token keeps a category or level a single subject token.
func token(s string) string {
	if s == "" {
		return "_"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return engine.EncodeToken(s)
		}
	}
	return s
}

// ResourceID builds the ARM id of a hub with the given name, as IoT Hub writes it in records.
func ResourceID(subscription, resourceGroup, hub string) string {
	return strings.ToUpper("/SUBSCRIPTIONS/" + subscription + "/RESOURCEGROUPS/" + resourceGroup +
		"/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/" + hub)
}

// NewWriter opens the records stream and starts the background writer. Call Close to flush.
func NewWriter(ctx context.Context, eng *engine.Engine, cfg Config) (*Writer, error) {
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 1 << 30
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 4096
	}
	if cfg.Location == "" {
		cfg.Location = "local"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := eng.Stream(ctx, engine.StreamConfig{
		Name:     StreamName,
		Subjects: []string{SubjectPrefix + ">"},
		MaxAge:   cfg.Retention,
		MaxBytes: cfg.MaxBytes,
	}); err != nil {
		return nil, err
	}
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	w := &Writer{cfg: cfg, eng: eng, log: log.With("component", "diag"), ch: make(chan item, cfg.Buffer),
		done: make(chan struct{}), now: time.Now, idPrefix: hex.EncodeToString(rb[:]) + "-"}
	go w.run()
	return w, nil
}

// ResourceID returns the hub's ARM id written in every record.
func (w *Writer) ResourceID() string { return w.cfg.ResourceID }

// Encode turns a record into its wire shape, filling defaults.
func (w *Writer) Encode(r Record) Wire {
	if r.Time.IsZero() {
		r.Time = w.now()
	}
	out := Wire{
		Time:              r.Time.UTC().Format(time.RFC3339Nano),
		ResourceID:        w.cfg.ResourceID,
		OperationName:     r.OperationName,
		Category:          r.Category,
		Level:             r.Level,
		ResultType:        r.ResultType,
		ResultDescription: r.ResultDescription,
		CallerIPAddress:   r.CallerIP,
		CorrelationID:     r.CorrelationID,
		Location:          w.cfg.Location,
	}
	props := r.Properties
	if r.Err != nil {
		e := errcode.As(r.Err)
		var inj *InjectedFault
		if errors.As(r.Err, &inj) {
			props = maps.Clone(props)
			if props == nil {
				props = map[string]any{}
			}
			props[PropFaultInjected] = "true"
			props[PropFaultRule] = inj.Rule
			if out.ResultDescription == "" && inj.Description != "" {
				out.ResultDescription = inj.Description
			}
		}
		if out.ResultType == "" {
			out.ResultType = e.Code.String()
		}
		if out.ResultDescription == "" {
			out.ResultDescription = e.Code.GuideName()
		}
		if out.Level == "" {
			out.Level = LevelError
		}
	}
	if out.Level == "" {
		out.Level = LevelInformation
	}
	if r.DurationMs >= 0 {
		out.DurationMs = strconv.FormatInt(r.DurationMs, 10)
	}
	if props == nil {
		props = map[string]any{}
	}
	b, err := json.Marshal(props)
	if err != nil {
		b = []byte("{}")
	}
	out.Properties = string(b)
	return out
}

// Write queues a record for storage. It waits while the buffer is full, until ctx ends.
func (w *Writer) Write(ctx context.Context, r Record) {
	rec := w.Encode(r)
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return
	}
	select {
	case w.ch <- item{rec: rec}:
	case <-ctx.Done():
		w.dropped.Add(1)
		w.log.Warn("diagnostic record dropped", "category", rec.Category, "op", rec.OperationName, "err", ctx.Err())
	}
}

// Flush waits until every record written before it is stored, or ctx ends.
func (w *Writer) Flush(ctx context.Context) error {
	done := make(chan struct{})
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return nil
	}
	select {
	case w.ch <- item{flush: done}:
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	w.mu.RUnlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Dropped returns how many records were dropped because the buffer stayed full until the
// writer's context ended, or the engine refused them.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

// maxBatch bounds the records stored in one round.
const maxBatch = 512

func (w *Writer) run() {
	defer close(w.done)
	batch := make([]engine.OutMsg, 0, maxBatch)
	var flushes []chan struct{}
	for it := range w.ch {
		batch, flushes = w.add(batch, flushes, it)
		// Take whatever else is already waiting, so a burst shares one round trip.
	more:
		for len(batch) < maxBatch {
			select {
			case it, ok := <-w.ch:
				if !ok {
					break more
				}
				batch, flushes = w.add(batch, flushes, it)
			default:
				break more
			}
		}
		w.store(batch)
		for _, f := range flushes {
			close(f)
		}
		batch, flushes = batch[:0], flushes[:0]
	}
}

func (w *Writer) add(batch []engine.OutMsg, flushes []chan struct{}, it item) ([]engine.OutMsg, []chan struct{}) {
	if it.flush != nil {
		return batch, append(flushes, it.flush)
	}
	b, err := json.Marshal(it.rec)
	if err != nil {
		return batch, flushes
	}
	id := w.idPrefix + strconv.FormatUint(w.seq.Add(1), 36)
	return append(batch, engine.OutMsg{Subject: Subject(it.rec.Category, it.rec.Level), ID: id, Data: b}), flushes
}

// store writes a batch, retrying it whole: the ids make the engine drop what it already has.
func (w *Writer) store(batch []engine.OutMsg) {
	if len(batch) == 0 {
		return
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = w.eng.PublishBatch(ctx, batch)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	w.dropped.Add(int64(len(batch)))
	w.log.Error("diagnostic records not stored", "count", len(batch), "err", err)
}

// Close stores every queued record and stops the writer.
func (w *Writer) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
	<-w.done
}

// MaskIP hides the last part of an address as IoT Hub does ("203.0.113.XXX").
func MaskIP(addr string) string {
	if addr == "" {
		return ""
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		addr = ap.Addr().String()
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return ""
	}
	ip = ip.Unmap()
	s := ip.String()
	if ip.Is4() {
		return s[:strings.LastIndexByte(s, '.')+1] + "XXX"
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i+1] + "XXXX"
	}
	return s
}

// Read calls fn with every stored record of the category ("" for all) written at or after since,
// oldest first, until fn returns false.
func Read(ctx context.Context, eng *engine.Engine, category string, since time.Time, fn func(Wire) bool) error {
	st, err := eng.OpenStream(ctx, StreamName)
	if err != nil {
		return err
	}
	filter := SubjectPrefix + ">"
	if category != "" {
		filter = SubjectPrefix + token(category) + ".>"
	}
	return st.Read(ctx, filter, since, func(m engine.Msg) bool {
		var rec Wire
		if json.Unmarshal(m.Data, &rec) != nil {
			return true
		}
		return fn(rec)
	})
}
