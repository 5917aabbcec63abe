package twin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
)

// Kind is the kind of the subject every stored twin is published on:
// engine.DeviceSubject(device, module, Kind).
const Kind = "twin"

// maxAttempts bounds how often a write without If-Match re-reads and re-applies after losing a
// compare-and-set to a concurrent writer. Each round one of the racing writers wins, so this is
// about how many may write one twin at the same moment.
const maxAttempts = 100

// backoff waits a little before retrying a lost compare-and-set, more the more often it lost, so
// that many writers of one twin spread out instead of colliding again at once.
func backoff(ctx context.Context, attempt int) {
	if attempt < 2 {
		return
	}
	d := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(200*time.Microsecond)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Config configures a [Store].
type Config struct {
	// Registry gives the identities twins belong to. Required.
	Registry *registry.Registry
	// Now returns the current time, written in $metadata. Nil means time.Now.
	Now func() time.Time
}

// Store keeps twins in an engine bucket, one key per identity.
type Store struct {
	b   *engine.Bucket
	reg *registry.Registry
	now func() time.Time
}

// Open opens (or creates) the twins bucket.
func Open(ctx context.Context, eng *engine.Engine, cfg Config) (*Store, error) {
	if cfg.Registry == nil {
		return nil, errors.New("twin: no registry")
	}
	b, err := eng.DeviceKV(ctx, engine.BucketConfig{Name: "twins", Description: "device and module twins"}, Kind)
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Store{b: b, reg: cfg.Registry, now: now}, nil
}

// stored is a twin's document in the bucket. The fields a node needs to notify a device of a
// desired change come first, so [Store.DesiredNotification] reads only the start of a document.
type stored struct {
	// Gen is the generation id of the identity the twin belongs to.
	Gen string `json:"gen"`
	// DesiredVersion is properties.desired.$version.
	DesiredVersion int64 `json:"dv"`
	// DesiredPatch is the change that made DesiredVersion, as the device is told of it.
	DesiredPatch json.RawMessage `json:"dp,omitempty"`
	// Version counts changes to tags and desired properties.
	Version int64 `json:"v"`
	// ReportedVersion is properties.reported.$version.
	ReportedVersion int64          `json:"rv"`
	Tags            map[string]any `json:"tags"`
	Desired         map[string]any `json:"d"`
	DesiredMeta     map[string]any `json:"dm"`
	Reported        map[string]any `json:"r"`
	ReportedMeta    map[string]any `json:"rm"`
}

// fresh is the twin of an identity nothing has written yet.
func fresh(gen string) *stored {
	never := stamp{at: formatTime(time.Time{})}
	dm, rm := map[string]any{}, map[string]any{}
	stamp{at: never.at, version: 1}.mark(dm)
	never.mark(rm)
	return &stored{
		Gen: gen, DesiredVersion: 1, Version: 1, ReportedVersion: 1,
		Tags: map[string]any{}, Desired: map[string]any{}, DesiredMeta: dm,
		Reported: map[string]any{}, ReportedMeta: rm,
	}
}

func decodeStored(b []byte) (*stored, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var d stored
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	for _, m := range []*map[string]any{&d.Tags, &d.Desired, &d.DesiredMeta, &d.Reported, &d.ReportedMeta} {
		if *m == nil {
			*m = map[string]any{}
		}
	}
	return &d, nil
}

// current is a twin as read from the bucket.
type current struct {
	doc *stored
	// rev is the bucket revision to compare-and-set against; 0 when the key has no value.
	rev uint64
	// exists is false when the identity has no twin of its own yet: no value, or one left by an
	// earlier identity of the same id (stale).
	exists bool
	stale  bool
}

// etag is the twin's etag: its revision, or 0 for a twin never written.
func (c current) etag() string {
	if !c.exists {
		return ETag(0)
	}
	return ETag(c.rev)
}

func key(deviceID, moduleID string) string { return engine.DeviceKey(deviceID, moduleID, Kind) }

// load reads an identity's twin; gen is the identity's generation id.
func (s *Store) load(ctx context.Context, deviceID, moduleID, gen string) (current, error) {
	ent, err := s.b.Get(ctx, key(deviceID, moduleID))
	if errors.Is(err, engine.ErrNotFound) {
		return current{doc: fresh(gen)}, nil
	}
	if err != nil {
		return current{}, errcode.Wrap(errcode.ServerError, err, "the twin could not be read")
	}
	d, err := decodeStored(ent.Value)
	if err != nil {
		return current{}, errcode.Wrap(errcode.ServerError, err, "the stored twin could not be decoded")
	}
	if d.Gen != gen {
		return current{doc: fresh(gen), rev: ent.Revision, stale: true}, nil
	}
	return current{doc: d, rev: ent.Revision, exists: true}, nil
}

// errConflict means another writer changed the twin between our read and our write.
var errConflict = errors.New("twin changed concurrently")

// write stores doc over cur with a compare-and-set and returns the new revision.
func (s *Store) write(ctx context.Context, deviceID, moduleID string, cur current, doc *stored) (uint64, error) {
	b, err := marshal(doc)
	if err != nil {
		return 0, errcode.Wrap(errcode.ServerError, err, "the twin could not be encoded")
	}
	var rev uint64
	if cur.rev == 0 {
		rev, err = s.b.Create(ctx, key(deviceID, moduleID), b)
	} else {
		rev, err = s.b.Update(ctx, key(deviceID, moduleID), b, cur.rev)
	}
	switch {
	case errors.Is(err, engine.ErrExists), errors.Is(err, engine.ErrRevisionMismatch):
		return 0, errConflict
	case err != nil:
		return 0, errcode.Wrap(errcode.ServerError, err, "the twin could not be stored")
	}
	return rev, nil
}

// ETag renders a bucket revision as a twin etag: base64 of the revision as 8 big-endian bytes,
// the form IoT Hub's twin etags have ("AAAAAAAAAAE=").
func ETag(rev uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rev)
	return base64.StdEncoding.EncodeToString(b[:])
}

// parseETag reverses [ETag]; it strips quotes and a weak prefix, as If-Match values carry them.
func parseETag(s string) (uint64, bool) {
	b, err := base64.StdEncoding.DecodeString(registry.NormalizeETag(s))
	if err != nil || len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// checkIfMatch compares an If-Match value with the twin's etag. Empty and "*" match anything.
func checkIfMatch(ifMatch string, cur current, what string) error {
	if ifMatch == "" || registry.IsWildcard(ifMatch) {
		return nil
	}
	if got, ok := parseETag(ifMatch); ok && ETag(got) == cur.etag() {
		return nil
	}
	return preconditionFailed(ifMatch, what)
}

func preconditionFailed(ifMatch, what string) error {
	return errcode.New(errcode.PreconditionFailed,
		"Precondition failed: the etag '%s' does not match the current etag of the twin of %s", printable(registry.NormalizeETag(ifMatch)), what)
}

func describe(deviceID, moduleID string) string {
	if moduleID == "" {
		return "device " + deviceID
	}
	return "module " + moduleID + " on device " + deviceID
}

// identity is the registry's view of a twin's owner.
type identity struct {
	device *registry.Device
	module *registry.Module
}

func (id identity) gen() string {
	if id.module != nil {
		return id.module.GenerationID
	}
	return id.device.GenerationID
}

// identity reads the owner of a twin: 404001 DeviceNotFound or 404010 ModuleNotFound when it is
// not registered.
func (s *Store) identity(ctx context.Context, deviceID, moduleID string) (identity, error) {
	if moduleID == "" {
		d, err := s.reg.GetDevice(ctx, deviceID)
		if err != nil {
			return identity{}, err
		}
		return identity{device: &d}, nil
	}
	m, err := s.reg.GetModule(ctx, deviceID, moduleID)
	if err != nil {
		return identity{}, err
	}
	return identity{module: &m}, nil
}

// Get returns an identity's twin as the service API shows it.
func (s *Store) Get(ctx context.Context, deviceID, moduleID string) (*Twin, error) {
	id, err := s.identity(ctx, deviceID, moduleID)
	if err != nil {
		return nil, err
	}
	cur, err := s.load(ctx, deviceID, moduleID, id.gen())
	if err != nil {
		return nil, err
	}
	return &Twin{id: id, doc: cur.doc, etag: cur.etag()}, nil
}

// servicePatch is what a service request may change: tags and desired properties. A nil map
// means the request did not carry that section.
type servicePatch struct {
	tags, desired map[string]any
}

// parseServiceBody reads a twin (PUT) or twin patch (PATCH) from the service: {"tags":{...},
// "properties":{"desired":{...}}}. Other members (deviceId, etag, status, reported properties,
// the desired section's $metadata and $version) are read-only and ignored, as a client may send
// back a twin it read.
func parseServiceBody(body []byte) (servicePatch, error) {
	m, err := decodeObject(body, "twin")
	if err != nil {
		return servicePatch{}, err
	}
	var p servicePatch
	if v, ok := m["tags"]; ok && v != nil {
		t, ok := v.(map[string]any)
		if !ok {
			return servicePatch{}, errcode.New(errcode.ArgumentInvalid, "tags must be a JSON object, not %s", kindOf(v))
		}
		if err := checkSection(t, "tags"); err != nil {
			return servicePatch{}, err
		}
		p.tags = t
	}
	if v, ok := m["properties"]; ok && v != nil {
		props, ok := v.(map[string]any)
		if !ok {
			return servicePatch{}, errcode.New(errcode.ArgumentInvalid, "properties must be a JSON object, not %s", kindOf(v))
		}
		if v, ok := props["desired"]; ok && v != nil {
			d, ok := v.(map[string]any)
			if !ok {
				return servicePatch{}, errcode.New(errcode.ArgumentInvalid, "properties.desired must be a JSON object, not %s", kindOf(v))
			}
			delete(d, "$metadata")
			delete(d, "$version")
			if err := checkSection(d, "properties.desired"); err != nil {
				return servicePatch{}, err
			}
			p.desired = d
		}
	}
	return p, nil
}

// Update applies a service patch (PATCH /twins/{id}): tags and desired properties are merged, a
// null deletes. ifMatch is the caller's etag; empty or "*" updates whatever is stored.
func (s *Store) Update(ctx context.Context, deviceID, moduleID string, body []byte, ifMatch string) (*Twin, error) {
	p, err := parseServiceBody(body)
	if err != nil {
		return nil, err
	}
	return s.serviceWrite(ctx, deviceID, moduleID, ifMatch, func(d *stored, now time.Time) (bool, error) {
		changed := false
		if len(p.tags) > 0 {
			merge(d.Tags, nil, p.tags, stamp{})
			changed = true
		}
		if len(p.desired) > 0 {
			if err := d.changeDesired(p.desired, now); err != nil {
				return false, err
			}
			changed = true
		}
		return changed, nil
	})
}

// Replace replaces tags and desired properties (PUT /twins/{id}); a section the body leaves out
// becomes empty. Devices are told of the difference as one desired patch.
func (s *Store) Replace(ctx context.Context, deviceID, moduleID string, body []byte, ifMatch string) (*Twin, error) {
	p, err := parseServiceBody(body)
	if err != nil {
		return nil, err
	}
	for _, m := range []*map[string]any{&p.tags, &p.desired} {
		if *m == nil {
			*m = map[string]any{}
		}
		dropNulls(*m)
	}
	return s.serviceWrite(ctx, deviceID, moduleID, ifMatch, func(d *stored, now time.Time) (bool, error) {
		changed := false
		if td := diff(d.Tags, p.tags); len(td) > 0 {
			d.Tags = cloneMap(p.tags)
			changed = true
		}
		if dd := diff(d.Desired, p.desired); len(dd) > 0 {
			if err := d.changeDesired(dd, now); err != nil {
				return false, err
			}
			changed = true
		}
		return changed, nil
	})
}

// changeDesired merges a desired patch, moves the desired $version on and keeps the patch for
// the device's notification.
func (d *stored) changeDesired(patch map[string]any, now time.Time) error {
	pb, err := marshal(patch)
	if err != nil {
		return errcode.Wrap(errcode.ServerError, err, "the desired patch could not be encoded")
	}
	d.DesiredVersion++
	merge(d.Desired, d.DesiredMeta, patch, newStamp(now, d.DesiredVersion))
	d.DesiredPatch = pb
	return nil
}

// serviceWrite reads the twin, checks If-Match, applies change and stores the result with a
// compare-and-set, retrying a lost race unless the caller named an etag.
func (s *Store) serviceWrite(ctx context.Context, deviceID, moduleID, ifMatch string, change func(*stored, time.Time) (bool, error)) (*Twin, error) {
	what := describe(deviceID, moduleID)
	specific := ifMatch != "" && !registry.IsWildcard(ifMatch)
	for attempt := 0; ; attempt++ {
		id, err := s.identity(ctx, deviceID, moduleID)
		if err != nil {
			return nil, err
		}
		cur, err := s.load(ctx, deviceID, moduleID, id.gen())
		if err != nil {
			return nil, err
		}
		if err := checkIfMatch(ifMatch, cur, what); err != nil {
			return nil, err
		}
		doc := cur.doc
		changed, err := change(doc, s.now())
		if err != nil {
			return nil, err
		}
		if !changed {
			return &Twin{id: id, doc: doc, etag: cur.etag()}, nil
		}
		doc.Version++
		if err := checkSize(doc.Tags, "tags", MaxTagsSize); err != nil {
			return nil, err
		}
		if err := checkSize(doc.Desired, "properties.desired", MaxDesiredSize); err != nil {
			return nil, err
		}
		rev, err := s.write(ctx, deviceID, moduleID, cur, doc)
		if errors.Is(err, errConflict) {
			if specific || attempt >= maxAttempts {
				return nil, preconditionFailed(ifMatch, what)
			}
			backoff(ctx, attempt)
			continue
		}
		if err != nil {
			return nil, err
		}
		return &Twin{id: id, doc: doc, etag: ETag(rev)}, nil
	}
}

// DeviceDocument returns the twin as a device reads it over MQTT:
// {"desired":{...,"$version":n},"reported":{...,"$version":m}}, without $metadata, as IoT Hub
// answers. gen is the generation id of the connected identity.
func (s *Store) DeviceDocument(ctx context.Context, deviceID, moduleID, gen string) ([]byte, error) {
	cur, err := s.load(ctx, deviceID, moduleID, gen)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(`{"desired":`)
	if err := writeSection(&buf, cur.doc.Desired, nil, cur.doc.DesiredVersion); err != nil {
		return nil, errcode.Wrap(errcode.ServerError, err, "the twin could not be encoded")
	}
	buf.WriteString(`,"reported":`)
	if err := writeSection(&buf, cur.doc.Reported, nil, cur.doc.ReportedVersion); err != nil {
		return nil, errcode.Wrap(errcode.ServerError, err, "the twin could not be encoded")
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// DesiredVersion returns the twin's current properties.desired.$version.
func (s *Store) DesiredVersion(ctx context.Context, deviceID, moduleID, gen string) (int64, error) {
	cur, err := s.load(ctx, deviceID, moduleID, gen)
	if err != nil {
		return 0, err
	}
	return cur.doc.DesiredVersion, nil
}

// UpdateReported merges a device's reported-properties patch (the body of an MQTT PATCH to
// $iothub/twin/PATCH/properties/reported/) and returns the new reported $version. gen is the
// generation id of the connected identity. A body that is not a JSON object is 400006; keys,
// values or depth against the rules 400004; a result over 32 KB 403100. Nothing changes on error.
func (s *Store) UpdateReported(ctx context.Context, deviceID, moduleID, gen string, body []byte) (int64, error) {
	patch, err := decodeObject(body, "reported properties patch")
	if err != nil {
		return 0, err
	}
	if err := checkSection(patch, "properties.reported"); err != nil {
		return 0, err
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.load(ctx, deviceID, moduleID, gen)
		if err != nil {
			return 0, err
		}
		if cur.stale {
			// The stored twin belongs to another generation: ours replaces it only if we are the
			// registered identity, not a connection left over from a deleted one.
			id, err := s.identity(ctx, deviceID, moduleID)
			if err != nil {
				return 0, err
			}
			if id.gen() != gen {
				return 0, errcode.New(errcode.DeviceNotFound, "the %s this connection belongs to was deleted", describe(deviceID, moduleID))
			}
		}
		doc := cur.doc
		if len(patch) == 0 {
			return doc.ReportedVersion, nil
		}
		doc.ReportedVersion++
		merge(doc.Reported, doc.ReportedMeta, patch, newStamp(s.now(), 0))
		if err := checkSize(doc.Reported, "properties.reported", MaxReportedSize); err != nil {
			return 0, err
		}
		_, err = s.write(ctx, deviceID, moduleID, cur, doc)
		if errors.Is(err, errConflict) {
			if attempt >= maxAttempts {
				return 0, errcode.New(errcode.ServiceUnavailable, "the twin is changing too fast; try again")
			}
			backoff(ctx, attempt)
			continue
		}
		if err != nil {
			return 0, err
		}
		return doc.ReportedVersion, nil
	}
}

// Delete removes an identity's twin. The registry calls it when the identity is deleted.
func (s *Store) Delete(ctx context.Context, deviceID, moduleID string) error {
	err := s.b.Delete(ctx, key(deviceID, moduleID), 0)
	if err != nil && !errors.Is(err, engine.ErrNotFound) {
		return errcode.Wrap(errcode.ServerError, err, "the twin could not be deleted")
	}
	return nil
}

// DesiredNotification turns a stored twin, as the engine publishes it on the identity's twin
// subject, into the body of the device's desired-property notification: the patch that made the
// twin's desired $version, with "$version" added. gen is the connected identity's generation id
// and after the last $version the device was sent (0 if unknown). ok is false when the change
// is not news for the device: another generation's twin, a deletion, or no desired change after
// after. When versions were skipped (a notification was lost on the way), the body is the whole
// desired section instead of the last patch, so the device at least holds every current value.
//
// It reads only the start of the document in the common case, so the node's dispatcher can call
// it for every change without falling behind.
func (s *Store) DesiredNotification(change []byte, gen string, after int64) (version int64, body []byte, ok bool) {
	h, ok := readHeader(change)
	if !ok || h.gen != gen || h.dv <= after {
		return 0, nil, false
	}
	if len(h.dp) > 1 && h.dp[0] == '{' && (after == 0 || h.dv == after+1) {
		return h.dv, withVersion(h.dp, h.dv), true
	}
	d, err := decodeStored(change)
	if err != nil {
		return 0, nil, false
	}
	var buf bytes.Buffer
	if writeSection(&buf, d.Desired, nil, d.DesiredVersion) != nil {
		return 0, nil, false
	}
	return h.dv, buf.Bytes(), true
}

// header is the start of a stored document.
type header struct {
	gen string
	dv  int64
	dp  json.RawMessage
}

// readHeader decodes gen, dv and dp, which [stored] writes first, and stops there.
func readHeader(b []byte) (header, bool) {
	var h header
	if len(b) == 0 {
		return h, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return h, false
	}
	seen := 0
	for dec.More() && seen < 3 {
		t, err := dec.Token()
		if err != nil {
			return h, false
		}
		name, _ := t.(string)
		switch name {
		case "gen":
			if dec.Decode(&h.gen) != nil {
				return h, false
			}
		case "dv":
			if dec.Decode(&h.dv) != nil {
				return h, false
			}
		case "dp":
			if dec.Decode(&h.dp) != nil {
				return h, false
			}
		default:
			return h, h.dv > 0 // dp is left out when empty
		}
		seen++
	}
	return h, h.dv > 0
}

// withVersion adds "$version" to a JSON object.
func withVersion(obj []byte, v int64) []byte {
	obj = bytes.TrimSpace(obj)
	if len(obj) < 2 {
		obj = []byte("{}")
	}
	out := make([]byte, 0, len(obj)+24)
	out = append(out, obj[:len(obj)-1]...)
	if len(bytes.TrimSpace(obj[1:len(obj)-1])) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"$version":`...)
	out = strconv.AppendInt(out, v, 10)
	return append(out, '}')
}

// writeSection writes a desired or reported section: its properties, then $metadata when meta
// is not nil, then $version.
func writeSection(buf *bytes.Buffer, props, meta map[string]any, version int64) error {
	pb, err := marshal(props)
	if err != nil {
		return err
	}
	buf.Write(pb[:len(pb)-1])
	sep := len(props) > 0
	if meta != nil {
		mb, err := marshal(meta)
		if err != nil {
			return err
		}
		if sep {
			buf.WriteByte(',')
		}
		buf.WriteString(`"$metadata":`)
		buf.Write(mb)
		sep = true
	}
	if sep {
		buf.WriteByte(',')
	}
	buf.WriteString(`"$version":`)
	buf.WriteString(strconv.FormatInt(version, 10))
	buf.WriteByte('}')
	return nil
}

// marshal encodes v as compact JSON without HTML escaping.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Scan calls fn with the twin of every device (modules false) or every module (modules true),
// as GET /twins/{id} shows it decoded into a map (numbers are float64), until fn returns false.
// Identities whose twin was never written are included with their fresh twin. It reads the
// whole registry and one twin per identity.
func (s *Store) Scan(ctx context.Context, modules bool, fn func(doc map[string]any) bool) error {
	// One bulk read of the twins bucket, joined in memory with one bulk read of the registry:
	// reading twin by twin costs a round trip each and made a 100k-device query take seconds.
	stored := map[string]engine.Entry{}
	if err := s.b.Scan(ctx, engine.DeviceKeyFilters(Kind, modules), func(e engine.Entry) bool {
		stored[e.Key] = e
		return true
	}); err != nil {
		return errcode.Wrap(errcode.ServerError, err, "the twins could not be read")
	}
	var err error
	visit := func(id identity, deviceID, moduleID string) bool {
		cur := current{doc: fresh(id.gen())}
		if ent, ok := stored[key(deviceID, moduleID)]; ok {
			d, derr := decodeStored(ent.Value)
			if derr != nil {
				err = errcode.Wrap(errcode.ServerError, derr, "the stored twin could not be decoded")
				return false
			}
			if d.Gen == id.gen() {
				cur = current{doc: d, rev: ent.Revision, exists: true}
			}
		}
		b, merr := json.Marshal(&Twin{id: id, doc: cur.doc, etag: cur.etag()})
		if merr != nil {
			err = merr
			return false
		}
		var m map[string]any
		if uerr := json.Unmarshal(b, &m); uerr != nil {
			err = uerr
			return false
		}
		return fn(m)
	}
	var serr error
	if modules {
		serr = s.reg.EachModule(ctx, func(m registry.Module) bool {
			return visit(identity{module: &m}, m.DeviceID, m.ModuleID)
		})
	} else {
		serr = s.reg.EachDevice(ctx, func(d registry.Device) bool {
			return visit(identity{device: &d}, d.DeviceID, "")
		})
	}
	if err != nil {
		return err
	}
	return serr
}
