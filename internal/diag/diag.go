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
package diag

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
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
)

// Record is one diagnostic log record. Fields left empty are filled by the [Writer].
type Record struct {
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

// Writer appends records to the engine in the background, in order, each exactly once.
type Writer struct {
	cfg  Config
	eng  *engine.Engine
	log  *slog.Logger
	ch   chan Wire
	done chan struct{} // closed when run has stored everything

	mu     sync.RWMutex // guards closed; held for reading while sending on ch
	closed bool

	now func() time.Time
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
	w := &Writer{cfg: cfg, eng: eng, log: log.With("component", "diag"), ch: make(chan Wire, cfg.Buffer),
		done: make(chan struct{}), now: time.Now}
	go w.run()
	return w, nil
}

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
	if r.Err != nil {
		e := errcode.As(r.Err)
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
		out.DurationMs = itoa(r.DurationMs)
	}
	props := r.Properties
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
	case w.ch <- rec:
	case <-ctx.Done():
		w.log.Warn("diagnostic record dropped", "category", rec.Category, "op", rec.OperationName, "err", ctx.Err())
	}
}

func (w *Writer) run() {
	defer close(w.done)
	for rec := range w.ch {
		w.store(rec)
	}
}

func (w *Writer) store(rec Wire) {
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	for attempt := 0; attempt < 5; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = w.eng.Publish(ctx, SubjectPrefix+rec.Category, b, nil)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	w.log.Error("diagnostic record not stored", "category", rec.Category, "err", err)
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

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
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
		filter = SubjectPrefix + category
	}
	return st.Read(ctx, filter, since, func(m engine.Msg) bool {
		var rec Wire
		if json.Unmarshal(m.Data, &rec) != nil {
			return true
		}
		return fn(rec)
	})
}
