package events

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/telemetry"
)

// Engine names.
const (
	Stream           = "EVENTS"
	DeadLetterStream = "EVENTDLQ"
	eventSubject     = "events."
	deadSubject      = "deadletter."
	// ConsumerGroup is the telemetry consumer group DeviceTelemetry events are read with.
	ConsumerGroup = "roost-eventgrid"
)

// Config shapes a [Manager].
type Config struct {
	// HubName is the hub's name in events (data.hubName).
	HubName string
	// ResourceID is the hub's ARM id, the events' topic.
	ResourceID string
	// Registry is the bucket of identities whose changes give DeviceCreated and DeviceDeleted.
	// Empty means "registry".
	RegistryBucket string
	// Telemetry, when set, gives DeviceTelemetry events (only while a subscription wants them).
	Telemetry *telemetry.Pipeline
	// Client delivers webhooks. Nil means a client of its own.
	Client *http.Client
	// Timeout bounds one delivery. Zero means 30 s.
	Timeout time.Duration
	// RetryBase is the first retry's wait, doubling up to RetryMax. Zero means 10 s and 10 min.
	RetryBase, RetryMax time.Duration
	// Poll is how often subscriptions are reread. Zero means 2 s.
	Poll time.Duration
	// OnDelivery is told each delivery's outcome ("success", "failure") and event type.
	OnDelivery func(result, eventType string)
	// OnLatency is told, per delivered event, the time since the event.
	OnLatency func(time.Duration)
	Now       func() time.Time
	Logger    *slog.Logger
}

// Manager holds subscriptions and, on the node that runs it, produces and delivers events.
type Manager struct {
	cfg   Config
	eng   *engine.Engine
	subs  *engine.Bucket
	state *engine.Bucket
	log   *slog.Logger
	// anySubs is whether a subscription exists, kept by [Manager.watchSubscriptions].
	anySubs atomic.Bool
}

// subsBucket holds the subscriptions.
const subsBucket = "event-subs"

// Open opens the subscriptions, state, events and dead letters.
func Open(ctx context.Context, eng *engine.Engine, cfg Config) (*Manager, error) {
	if cfg.RegistryBucket == "" {
		cfg.RegistryBucket = "registry"
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 10 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 10 * time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{cfg: cfg, eng: eng, log: log.With("component", "events")}
	var err error
	if m.subs, err = eng.KV(ctx, engine.BucketConfig{Name: subsBucket, Description: "device event subscriptions"}); err != nil {
		return nil, err
	}
	if m.state, err = eng.KV(ctx, engine.BucketConfig{Name: "event-state", Description: "where event producers and subscriptions got to"}); err != nil {
		return nil, err
	}
	if _, err = eng.Stream(ctx, engine.StreamConfig{Name: Stream, Subjects: []string{eventSubject + ">"}, MaxAge: 25 * time.Hour}); err != nil {
		return nil, err
	}
	if _, err = eng.Stream(ctx, engine.StreamConfig{Name: DeadLetterStream, Subjects: []string{deadSubject + ">"}, MaxAge: 7 * 24 * time.Hour}); err != nil {
		return nil, err
	}
	return m, nil
}

func subKey(name string) string { return "s." + engine.EncodeToken(name) }

// Put adds or replaces a subscription. A new subscription receives events from now on.
func (m *Manager) Put(ctx context.Context, s Subscription) (Subscription, error) {
	if err := Normalize(&s); err != nil {
		return Subscription{}, err
	}
	if old, ok, _ := m.Get(ctx, s.Name); ok {
		s.Created = old.Created
	} else {
		s.Created = m.cfg.Now().UTC()
		// Start after the events already stored.
		if st, err := m.eng.OpenStream(ctx, Stream); err == nil {
			if state, err := st.State(ctx); err == nil {
				_, _ = m.state.Put(ctx, "sub."+engine.EncodeToken(s.Name), []byte(strconv.FormatUint(state.LastSeq, 10)))
			}
		}
	}
	b, _ := json.Marshal(s)
	if _, err := m.subs.Put(ctx, subKey(s.Name), b); err != nil {
		return Subscription{}, err
	}
	return s, nil
}

// Get returns a subscription.
func (m *Manager) Get(ctx context.Context, name string) (Subscription, bool, error) {
	var s Subscription
	ok, err := m.subs.GetJSON(ctx, subKey(name), &s)
	return s, ok, err
}

// Delete removes a subscription; false if there was none.
func (m *Manager) Delete(ctx context.Context, name string) (bool, error) {
	if _, ok, err := m.Get(ctx, name); err != nil || !ok {
		return false, err
	}
	_ = m.state.Delete(ctx, "sub."+engine.EncodeToken(name), 0)
	return true, m.subs.Delete(ctx, subKey(name), 0)
}

// List returns the subscriptions by name.
func (m *Manager) List(ctx context.Context) ([]Subscription, error) {
	var out []Subscription
	err := m.subs.Scan(ctx, []string{">"}, func(e engine.Entry) bool {
		var s Subscription
		if json.Unmarshal(e.Value, &s) == nil {
			out = append(out, s)
		}
		return true
	})
	slices.SortFunc(out, func(a, b Subscription) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// DeadLetters returns the dead-lettered events of a subscription ("" for all) since a time.
func (m *Manager) DeadLetters(ctx context.Context, sub string, since time.Time) ([]DeadLetter, error) {
	st, err := m.eng.OpenStream(ctx, DeadLetterStream)
	if err != nil {
		return nil, err
	}
	cfg := engine.ScanConfig{Since: since}
	if sub != "" {
		cfg.Filters = []string{deadSubject + engine.EncodeToken(sub)}
	}
	var out []DeadLetter
	err = st.Scan(ctx, cfg, func(msg engine.Msg) bool {
		var d DeadLetter
		if json.Unmarshal(msg.Data, &d) == nil {
			out = append(out, d)
		}
		return true
	})
	return out, err
}

// Run produces and delivers events until ctx ends. Run it on one node at a time.
func (m *Manager) Run(ctx context.Context) {
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := f(ctx); err != nil && ctx.Err() == nil {
					m.log.Warn("event "+name+" stopped; restarting", "err", err)
					sleep(ctx, 2*time.Second)
				}
			}
		}()
	}
	// Until the watcher has caught up, trust the list (and on an error, produce).
	subs, err := m.List(ctx)
	m.anySubs.Store(err != nil || len(subs) > 0)
	run("subscriptions", m.watchSubscriptions)
	run("connections", m.produceConnections)
	run("registry", m.produceLifecycle)
	if m.cfg.Telemetry != nil {
		run("telemetry", m.produceTelemetry)
	}
	run("delivery", m.deliverAll)
	wg.Wait()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (m *Manager) checkpoint(ctx context.Context, key string) uint64 {
	ent, err := m.state.Get(ctx, key)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(string(ent.Value), 10, 64)
	return n
}

func (m *Manager) save(ctx context.Context, key string, seq uint64) error {
	_, err := m.state.Put(ctx, key, []byte(strconv.FormatUint(seq, 10)))
	if err != nil && ctx.Err() == nil {
		m.log.Warn("save event position", "key", key, "err", err)
	}
	return err
}

// publish stores an event once (its id deduplicates replays after a failover).
func (m *Manager) publish(ctx context.Context, id string, e Event) error {
	b, _ := json.Marshal(e)
	return m.eng.PublishBatch(ctx, []engine.OutMsg{{Subject: eventSubject + strings.TrimPrefix(e.EventType, "Microsoft.Devices."), ID: id, Data: b}})
}

func (m *Manager) event(typ, deviceID, id string, at time.Time, data any, dataVersion string) Event {
	b, _ := json.Marshal(data)
	return Event{ID: id, Topic: m.cfg.ResourceID, Subject: "devices/" + deviceID, EventType: typ,
		EventTime: at.UTC().Format("2006-01-02T15:04:05.0000000Z"), Data: b, DataVersion: dataVersion, MetadataVersion: "1"}
}

// eventID makes a GUID-shaped id from a source position, so a replay gets the same id.
func eventID(kind byte, seq uint64) string {
	s := fmt.Sprintf("%02x%030x", kind, seq)
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// SequenceNumber formats a connection event's sequence number: 64 hex digits.
func SequenceNumber(seq uint64) string { return fmt.Sprintf("%064X", seq) }

// produceConnections turns Connections records into DeviceConnected and DeviceDisconnected.
func (m *Manager) produceConnections(ctx context.Context) error {
	st, err := m.eng.OpenStream(ctx, diag.StreamName)
	if err != nil {
		return err
	}
	const key = "src.connections"
	fc := engine.FollowConfig{Filters: diag.Filters([]string{diag.Connections}, nil)}
	seq := m.checkpoint(ctx, key)
	if seq > 0 {
		fc.StartSeq = seq + 1
	} else {
		fc.NewOnly = true
	}
	f, err := st.Follow(ctx, fc)
	if err != nil {
		return err
	}
	defer f.Stop()
	pos := m.position(key, seq)
	defer pos.close(ctx)
	var w window
	defer w.end()
	for {
		msg, err := pos.next(ctx, f, &w)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if m.wantEvents() {
			if err := m.connectionEvent(ctx, msg); err != nil {
				return err
			}
		}
		pos.advance(msg.Sequence)
		if pos.due() {
			pos.save(ctx)
			w.end()
		}
	}
}

// connectionEvent publishes the event of a Connections record, if it makes one.
func (m *Manager) connectionEvent(ctx context.Context, msg engine.Msg) error {
	var w diag.Wire
	if json.Unmarshal(msg.Data, &w) != nil {
		return nil
	}
	var typ string
	switch {
	case w.OperationName == diag.OpDeviceConnect && w.Level != diag.LevelError:
		typ = DeviceConnected
	case w.OperationName == diag.OpDeviceDisconnect:
		typ = DeviceDisconnected
	default:
		return nil
	}
	var p struct {
		DeviceID string `json:"deviceId"`
		ModuleID string `json:"moduleId"`
	}
	_ = json.Unmarshal([]byte(w.Properties), &p)
	if p.DeviceID == "" {
		return nil
	}
	at, _ := time.Parse(time.RFC3339Nano, w.Time)
	data := map[string]any{
		"deviceConnectionStateEventInfo": map[string]string{"sequenceNumber": SequenceNumber(msg.Sequence)},
		"hubName":                        m.cfg.HubName, "deviceId": p.DeviceID, "moduleId": p.ModuleID,
	}
	id := eventID(1, msg.Sequence)
	e := m.event(typ, p.DeviceID, id, at, data, "1")
	if p.ModuleID != "" {
		e.Subject += "/modules/" + p.ModuleID
	}
	return m.publish(ctx, id, e)
}

// storedDevice is the part of a registry entry the twin template needs.
type storedDevice struct {
	DeviceID          string `json:"deviceId"`
	GenerationID      string `json:"generationId"`
	Status            string `json:"status"`
	StatusUpdatedTime string `json:"statusUpdatedTime"`
	Authentication    struct {
		Type           string `json:"type"`
		X509Thumbprint *struct {
			PrimaryThumbprint   *string `json:"primaryThumbprint"`
			SecondaryThumbprint *string `json:"secondaryThumbprint"`
		} `json:"x509Thumbprint"`
	} `json:"authentication"`
}

// produceLifecycle turns registry changes into DeviceCreated and DeviceDeleted.
func (m *Manager) produceLifecycle(ctx context.Context) error {
	const key = "src.registry"
	from := m.checkpoint(ctx, key)
	if from == 0 {
		// Start with changes made from now on.
		if st, err := m.eng.OpenStream(ctx, "KV_"+m.cfg.RegistryBucket); err == nil {
			if s, err := st.State(ctx); err == nil {
				from = s.LastSeq
				_ = m.save(ctx, key, from)
			}
		}
	}
	// FollowBucket gives no chance to act while the registry is quiet, so a goroutine of its
	// own saves the position the callback reached, at most every saveEvery and within saveEvery
	// of a change. (Not at once after an event either: a bulk import would again cost a save
	// per device, and a replay of the last saveEvery only stores duplicates the engine drops.)
	var seen atomic.Uint64
	seen.Store(from)
	wake := make(chan struct{}, 1)
	sctx, stopSaver := context.WithCancel(ctx)
	saverDone := make(chan struct{})
	go func() { defer close(saverDone); m.saveLoop(sctx, m.position(key, from), &seen, wake) }()
	defer func() { stopSaver(); <-saverDone }()
	deleted := map[uint64]bool{} // revisions of delete markers seen: a Create after one names it
	var ferr error
	// Most changes (updates) make no event and cost a map lookup, an atomic store and a
	// non-blocking send.
	err := m.eng.FollowBucket(ctx, m.cfg.RegistryBucket, "d.*", from, func(c engine.Change) bool {
		var typ string
		switch {
		case c.Deleted:
			typ = DeviceDeleted
			deleted[c.Revision] = true
			if len(deleted) > 100000 {
				clear(deleted)
			}
		case c.Created || deleted[c.ExpectedRevision]:
			typ = DeviceCreated
			delete(deleted, c.ExpectedRevision)
		}
		if typ != "" && m.wantEvents() {
			if dev, err := engine.DecodeToken(strings.TrimPrefix(c.Key, "d.")); err == nil {
				var sd storedDevice
				if typ == DeviceCreated {
					_ = json.Unmarshal(c.Value, &sd)
				}
				id := eventID(2, c.Revision)
				data := map[string]any{"twin": twinTemplate(dev, sd, c.Revision), "hubName": m.cfg.HubName, "deviceId": dev}
				if err := m.publish(ctx, id, m.event(typ, dev, id, c.Time, data, "1")); err != nil {
					ferr = err
					return false
				}
			}
		}
		seen.Store(c.Revision)
		select {
		case wake <- struct{}{}:
		default:
		}
		return true
	})
	if ferr != nil {
		return ferr
	}
	return err
}

// twinTemplate is the default twin IoT Hub puts in lifecycle events.
func twinTemplate(dev string, sd storedDevice, rev uint64) map[string]any {
	status := sd.Status
	if status == "" {
		status = "enabled"
	}
	auth := "sas"
	switch strings.ToLower(sd.Authentication.Type) {
	case "selfsigned":
		auth = "selfSigned"
	case "certificateauthority":
		auth = "certificateAuthority"
	}
	var prim, sec any
	if t := sd.Authentication.X509Thumbprint; t != nil {
		if t.PrimaryThumbprint != nil {
			prim = *t.PrimaryThumbprint
		}
		if t.SecondaryThumbprint != nil {
			sec = *t.SecondaryThumbprint
		}
	}
	etag := base64.StdEncoding.EncodeToString([]byte(strconv.FormatUint(rev, 10)))
	meta := map[string]any{"$metadata": map[string]any{"$lastUpdated": "0001-01-01T00:00:00Z"}, "$version": 1}
	return map[string]any{
		"deviceId": dev, "etag": etag, "deviceEtag": "null", "status": status, "statusUpdateTime": "0001-01-01T00:00:00",
		"connectionState": "Disconnected", "lastActivityTime": "0001-01-01T00:00:00", "cloudToDeviceMessageCount": 0,
		"authenticationType": auth, "x509Thumbprint": map[string]any{"primaryThumbprint": prim, "secondaryThumbprint": sec},
		"version": 1, "properties": map[string]any{"desired": meta, "reported": meta},
	}
}

// wantsTelemetry reports whether a subscription takes DeviceTelemetry.
func (m *Manager) wantsTelemetry(ctx context.Context) bool {
	subs, err := m.List(ctx)
	if err != nil {
		return false
	}
	for _, s := range subs {
		if len(s.EventTypes) == 0 || slices.Contains(s.EventTypes, DeviceTelemetry) {
			return true
		}
	}
	return false
}

// produceTelemetry turns device-to-cloud messages into DeviceTelemetry events while a
// subscription wants them, reading as its own consumer group (as IoT Hub adds a route).
func (m *Manager) produceTelemetry(ctx context.Context) error {
	for !m.wantsTelemetry(ctx) {
		sleep(ctx, m.cfg.Poll)
		if ctx.Err() != nil {
			return nil
		}
	}
	if _, err := m.cfg.Telemetry.ConsumerGroup(ctx, ConsumerGroup); err != nil {
		if _, err := m.cfg.Telemetry.CreateConsumerGroup(ctx, ConsumerGroup); err != nil {
			return err
		}
	}
	rd, err := m.cfg.Telemetry.NewReader(ctx, telemetry.ReadOptions{ConsumerGroup: ConsumerGroup, From: telemetry.FromCheckpoint})
	if err != nil {
		return err
	}
	defer rd.Close()
	lastCheck := time.Now()
	for {
		msg, err := rd.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		id := eventID(byte(16+msg.Partition), msg.SequenceNumber)
		if err := m.publish(ctx, id, m.event(DeviceTelemetry, msg.DeviceID, id, msg.EnqueuedTime, telemetryData(m.cfg.HubName, msg), "")); err != nil {
			return err
		}
		if err := rd.Checkpoint(ctx, msg); err != nil {
			return err
		}
		if time.Since(lastCheck) > 10*time.Second {
			lastCheck = time.Now()
			if !m.wantsTelemetry(ctx) {
				return nil // back to waiting for a subscriber
			}
		}
	}
}

// telemetryData is a DeviceTelemetry event's data: the body (parsed when the message says it is
// UTF-8 JSON, else base64), application properties and system properties.
func telemetryData(hub string, msg *telemetry.Message) map[string]any {
	var body any = base64.StdEncoding.EncodeToString(msg.Body)
	if strings.EqualFold(msg.ContentType, "application/json") && strings.EqualFold(msg.ContentEncoding, "utf-8") {
		var v any
		if json.Unmarshal(msg.Body, &v) == nil {
			body = v
		}
	}
	props := map[string]string{}
	for _, p := range msg.Properties {
		props[p.Name] = p.Value
	}
	sys := map[string]string{
		"iothub-connection-device-id":          msg.DeviceID,
		"iothub-connection-auth-method":        msg.AuthMethod,
		"iothub-connection-auth-generation-id": msg.AuthGenerationID,
		"iothub-enqueuedtime":                  msg.EnqueuedTime.UTC().Format("2006-01-02T15:04:05.000Z"),
		"iothub-message-source":                "Telemetry",
	}
	if msg.ContentType != "" {
		sys["iothub-content-type"] = msg.ContentType
	}
	if msg.ContentEncoding != "" {
		sys["iothub-content-encoding"] = msg.ContentEncoding
	}
	if msg.ModuleID != "" {
		sys["iothub-connection-module-id"] = msg.ModuleID
	}
	return map[string]any{"body": body, "properties": props, "systemProperties": sys}
}
