// Package faults injects IoT Hub's transient failures on purpose, so that users can prove their
// devices and services survive what the troubleshooting guide describes: 500001 ServerError,
// 500008 GenericTimeout, 503001 ServiceUnavailable, an InternalServerError, 429001
// ThrottlingException, or a dropped connection (404104 DeviceConnectionClosedRemotely).
//
// A [Rule] names the operations it hits (connect, telemetry, twin, methods, c2d, registry,
// upload, query, a diagnostic category or category/operation, or * for all), the devices (all
// when none; a trailing * matches a prefix), the failure, and how often: a rate (the share of
// matching operations that fail) and optionally a count (it stops after that many). Rules live in
// the engine, so every node applies them; counts are decremented with compare-and-set, so a rule
// with count 3 fails exactly three operations cluster-wide.
//
// Edges ask before each operation:
//
//	if e := inj.Check(ctx, diag.DeviceTelemetry, diag.OpIngress, deviceID); e != nil {
//		return e // log it and answer as for a real failure
//	}
//
// The error's cause is a [diag.InjectedFault], so the diagnostic record is written exactly as
// for a real failure and carries faultInjected "true" and the rule's id.
package faults

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// Rule is one fault injection rule.
type Rule struct {
	ID string `json:"id"`
	// Operations select what fails: connect, telemetry, twin, methods, c2d, registry, upload,
	// query, a diagnostic category (Connections) or category/operation
	// (DeviceIdentityOperations/get), or * for everything.
	Operations []string `json:"operations"`
	// Devices are the device ids hit; empty means all. A trailing * matches a prefix.
	Devices []string `json:"devices,omitempty"`
	// Error is the failure: 500001 or ServerError, 500008 or GenericTimeout, 503001 or
	// ServiceUnavailable, InternalServerError, 429001 or ThrottlingException, 404104 or drop.
	Error string `json:"error"`
	// Rate is the share of matching operations that fail, from 0 (exclusive) to 1. Zero means 1.
	Rate float64 `json:"rate,omitempty"`
	// Count, when positive, is how many more operations the rule fails before it ends.
	Count int64 `json:"count,omitempty"`
	// Expires, when set, ends the rule.
	Expires time.Time `json:"expires,omitzero"`
	Created time.Time `json:"created"`
}

// failure is what a rule's Error means.
type failure struct {
	code errcode.Code
	desc string // resultDescription when the code's own name is not what the guide says
	msg  string
}

var failures = map[string]failure{
	"500001":                         {code: errcode.ServerError, msg: "an internal error occurred (injected fault)"},
	"servererror":                    {code: errcode.ServerError, msg: "an internal error occurred (injected fault)"},
	"500008":                         {code: errcode.GenericTimeout, msg: "the operation timed out (injected fault)"},
	"generictimeout":                 {code: errcode.GenericTimeout, msg: "the operation timed out (injected fault)"},
	"503001":                         {code: errcode.ServiceUnavailable, msg: "the hub is temporarily unavailable (injected fault)"},
	"503":                            {code: errcode.ServiceUnavailable, msg: "the hub is temporarily unavailable (injected fault)"},
	"serviceunavailable":             {code: errcode.ServiceUnavailable, msg: "the hub is temporarily unavailable (injected fault)"},
	"internalservererror":            {code: 500000, desc: "InternalServerError", msg: "an internal server error occurred (injected fault)"},
	"500":                            {code: 500000, desc: "InternalServerError", msg: "an internal server error occurred (injected fault)"},
	"429001":                         {code: errcode.ThrottlingException, msg: "the operation was throttled (injected fault)"},
	"throttlingexception":            {code: errcode.ThrottlingException, msg: "the operation was throttled (injected fault)"},
	"404104":                         {code: errcode.DeviceConnectionClosedRemotely, msg: "the connection was dropped (injected fault)"},
	"drop":                           {code: errcode.DeviceConnectionClosedRemotely, msg: "the connection was dropped (injected fault)"},
	"deviceconnectionclosedremotely": {code: errcode.DeviceConnectionClosedRemotely, msg: "the connection was dropped (injected fault)"},
}

// Errors names the failures a rule may inject.
const Errors = "500001 (ServerError), 500008 (GenericTimeout), 503001 (ServiceUnavailable), InternalServerError, 429001 (ThrottlingException), 404104 (drop)"

// aliases map the short operation names to diagnostic categories and operations.
var aliases = map[string][]string{
	"connect":   {diag.Connections + "/" + diag.OpDeviceConnect},
	"telemetry": {diag.DeviceTelemetry},
	"twin":      {diag.D2CTwinOperations, diag.C2DTwinOperations},
	"twins":     {diag.D2CTwinOperations, diag.C2DTwinOperations},
	"methods":   {diag.DirectMethods},
	"method":    {diag.DirectMethods},
	"c2d":       {diag.C2DCommands},
	"registry":  {diag.DeviceIdentityOperations},
	"upload":    {diag.FileUploadOperations},
	"uploads":   {diag.FileUploadOperations},
	"query":     {diag.TwinQueries},
	"jobs":      {diag.JobsOperations},
	"*":         {"*"},
}

// Normalize checks a rule and fills its defaults. It returns an error a user can act on.
func Normalize(r *Rule) error {
	if len(r.Operations) == 0 {
		return errors.New("a fault needs operations: connect, telemetry, twin, methods, c2d, registry, upload, query, a category or *")
	}
	var ops []string
	for _, op := range r.Operations {
		op = strings.TrimSpace(op)
		if a, ok := aliases[strings.ToLower(op)]; ok {
			ops = append(ops, a...)
			continue
		}
		cat, name, _ := strings.Cut(op, "/")
		c, ok := diag.FindCategory(cat)
		if !ok {
			return fmt.Errorf("operation %q is not connect, telemetry, twin, methods, c2d, registry, upload, query, *, or a diagnostic category", op)
		}
		if name == "" {
			ops = append(ops, c.Name)
			continue
		}
		found := false
		for _, o := range c.Operations {
			if strings.EqualFold(o.Name, name) {
				ops = append(ops, c.Name+"/"+o.Name)
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s has no operation %q", c.Name, name)
		}
	}
	slices.Sort(ops)
	r.Operations = slices.Compact(ops)
	if _, ok := failures[strings.ToLower(strings.TrimSpace(r.Error))]; !ok {
		return fmt.Errorf("error %q is not one of %s", r.Error, Errors)
	}
	if r.Rate == 0 {
		r.Rate = 1
	}
	if r.Rate < 0 || r.Rate > 1 || math.IsNaN(r.Rate) {
		return fmt.Errorf("rate %v is not between 0 and 1", r.Rate)
	}
	if r.Count < 0 {
		return fmt.Errorf("count %d is negative", r.Count)
	}
	for _, d := range r.Devices {
		if strings.TrimSpace(d) == "" {
			return errors.New("a device id is empty")
		}
	}
	return nil
}

// Config shapes an [Injector].
type Config struct {
	// Refresh is how often a node rereads the rules. Zero means 1 s.
	Refresh time.Duration
	// Drop, when set, closes the listed devices' connections at once when a drop rule is added
	// (the MQTT edge does it on whichever node holds them).
	Drop func(deviceID, rule string) error
	// OnInject is told of every injected failure (for metrics).
	OnInject func(code errcode.Code)
	// Now returns the current time. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Injector holds the rules and decides, per operation, whether to fail it.
type Injector struct {
	cfg    Config
	kv     *engine.Bucket
	log    *slog.Logger
	rules  atomic.Pointer[[]Rule]
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Open opens the rules bucket and starts refreshing the rules. Close stops it.
func Open(ctx context.Context, eng *engine.Engine, cfg Config) (*Injector, error) {
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kv, err := eng.KV(ctx, engine.BucketConfig{Name: "faults", Description: "fault injection rules"})
	if err != nil {
		return nil, err
	}
	inj := &Injector{cfg: cfg, kv: kv, log: log.With("component", "faults"), done: make(chan struct{})}
	empty := []Rule{}
	inj.rules.Store(&empty)
	if err := inj.refresh(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	inj.cancel = cancel
	go inj.loop(rctx)
	return inj, nil
}

// Close stops refreshing.
func (i *Injector) Close() {
	if i == nil || i.cancel == nil {
		return
	}
	i.cancel()
	<-i.done
}

func (i *Injector) loop(ctx context.Context) {
	defer close(i.done)
	t := time.NewTicker(i.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := i.refresh(ctx); err != nil && ctx.Err() == nil {
				i.log.Debug("refresh fault rules", "err", err)
			}
		}
	}
}

func (i *Injector) refresh(ctx context.Context) error {
	var rules []Rule
	now := i.cfg.Now()
	err := i.kv.Scan(ctx, []string{">"}, func(e engine.Entry) bool {
		var r Rule
		if json.Unmarshal(e.Value, &r) == nil && (r.Expires.IsZero() || r.Expires.After(now)) {
			rules = append(rules, r)
		}
		return true
	})
	if err != nil {
		return err
	}
	sort.Slice(rules, func(a, b int) bool { return rules[a].Created.Before(rules[b].Created) })
	i.rules.Store(&rules)
	return nil
}

func key(id string) string { return "r." + engine.EncodeToken(id) }

// Add stores a rule and applies it on every node within a second. A drop rule naming devices
// also closes their connections at once.
func (i *Injector) Add(ctx context.Context, r Rule) (Rule, error) {
	if err := Normalize(&r); err != nil {
		return Rule{}, err
	}
	if r.ID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		r.ID = "f-" + hex.EncodeToString(b[:])
	}
	r.Created = i.cfg.Now().UTC()
	b, _ := json.Marshal(r)
	if _, err := i.kv.Create(ctx, key(r.ID), b); err != nil {
		if errors.Is(err, engine.ErrExists) {
			return Rule{}, fmt.Errorf("a fault named %q exists", r.ID)
		}
		return Rule{}, err
	}
	if err := i.refresh(ctx); err != nil {
		return Rule{}, err
	}
	f := failures[strings.ToLower(strings.TrimSpace(r.Error))]
	if f.code == errcode.DeviceConnectionClosedRemotely && i.cfg.Drop != nil {
		for _, d := range r.Devices {
			if strings.HasSuffix(d, "*") {
				continue
			}
			if err := i.cfg.Drop(d, r.ID); err != nil {
				i.log.Warn("drop connection", "device", d, "err", err)
			}
		}
	}
	return r, nil
}

// List returns the rules in force.
func (i *Injector) List(ctx context.Context) ([]Rule, error) {
	if err := i.refresh(ctx); err != nil {
		return nil, err
	}
	return slices.Clone(*i.rules.Load()), nil
}

// Remove deletes a rule; false if there was none of that id.
func (i *Injector) Remove(ctx context.Context, id string) (bool, error) {
	if _, err := i.kv.Get(ctx, key(id)); errors.Is(err, engine.ErrNotFound) {
		return false, nil
	}
	if err := i.kv.Delete(ctx, key(id), 0); err != nil {
		return false, err
	}
	return true, i.refresh(ctx)
}

// Clear deletes every rule and returns how many there were.
func (i *Injector) Clear(ctx context.Context) (int, error) {
	rules, err := i.List(ctx)
	if err != nil {
		return 0, err
	}
	for _, r := range rules {
		if err := i.kv.Delete(ctx, key(r.ID), 0); err != nil {
			return 0, err
		}
	}
	return len(rules), i.refresh(ctx)
}

// matches reports whether the rule covers the operation and device.
func (r *Rule) matches(category, op, deviceID string) bool {
	hit := false
	for _, o := range r.Operations {
		if o == "*" || o == category || o == category+"/"+op {
			hit = true
			break
		}
	}
	if !hit {
		return false
	}
	if len(r.Devices) == 0 {
		return true
	}
	for _, d := range r.Devices {
		if p, ok := strings.CutSuffix(d, "*"); ok && strings.HasPrefix(deviceID, p) || d == deviceID {
			return true
		}
	}
	return false
}

// Check returns the failure to inject into an operation (a diagnostic category and operation
// name) for a device, or nil to let it proceed. It costs a few comparisons when no rule matches;
// a rule with a count costs one compare-and-set in the engine when it fires.
func (i *Injector) Check(ctx context.Context, category, op, deviceID string) *errcode.Error {
	if i == nil {
		return nil
	}
	rules := *i.rules.Load()
	if len(rules) == 0 {
		return nil
	}
	now := i.cfg.Now()
	for idx := range rules {
		r := &rules[idx]
		if !r.Expires.IsZero() && !r.Expires.After(now) || !r.matches(category, op, deviceID) {
			continue
		}
		if r.Rate < 1 && mrand.Float64() >= r.Rate {
			continue
		}
		if r.Count > 0 && !i.take(ctx, r.ID) {
			continue
		}
		f := failures[strings.ToLower(strings.TrimSpace(r.Error))]
		if i.cfg.OnInject != nil {
			i.cfg.OnInject(f.code)
		}
		return errcode.Wrap(f.code, &diag.InjectedFault{Rule: r.ID, Description: f.desc}, "%s", f.msg)
	}
	return nil
}

// take spends one of a counted rule's failures, cluster-wide; false when none is left.
func (i *Injector) take(ctx context.Context, id string) bool {
	// Callers on hot paths pass their connection's context: bound the engine calls here, so
	// Check costs no timer when nothing matches.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for attempt := 0; attempt < 5; attempt++ {
		ent, err := i.kv.Get(ctx, key(id))
		if err != nil {
			return false
		}
		var r Rule
		if json.Unmarshal(ent.Value, &r) != nil || r.Count <= 0 {
			return false
		}
		r.Count--
		if r.Count == 0 {
			if err := i.kv.Delete(ctx, key(id), ent.Revision); err == nil {
				_ = i.refresh(ctx)
				return true
			}
			continue
		}
		b, _ := json.Marshal(r)
		if _, err := i.kv.Update(ctx, key(id), b, ent.Revision); err == nil {
			return true
		}
	}
	return false
}
