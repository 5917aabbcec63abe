// Package registry is the hub's identity registry: devices and modules, their keys and
// thumbprints, status, and the connection state the device edges report.
//
// Identities live in an engine key-value bucket; the entry's revision is the identity's etag, so
// every update is a compare-and-set and concurrent writers never lose an update silently.
//
//	reg, err := registry.New(ctx, eng, registry.Config{})
//	dev, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "thermostat-1"})
//	dev.Status = registry.StatusDisabled
//	dev, err = reg.UpdateDevice(ctx, dev, dev.ETag)
//
// Every error returned is an [*errcode.Error] carrying IoT Hub's code.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/sas"
)

// Limits IoT Hub applies to the registry.
const (
	MaxIDLength           = 128
	MaxStatusReasonLength = 128
	MaxListTop            = 1000
	MaxBulkDevices        = 100
	MaxModulesPerDevice   = 50
)

// Config configures a [Registry]. The zero value is usable.
type Config struct {
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Revoke, when set, is called after an identity is disabled or deleted, so that the device
	// edges close its connections (code says why: 401002 disabled, 404001 deleted).
	Revoke func(deviceID, moduleID string, code errcode.Code, msg string)
	// OnDelete, when set, is called after an identity is deleted (moduleID empty for a device;
	// once more for each module a deleted device had), so that what belongs to it (its twin)
	// goes too.
	OnDelete func(deviceID, moduleID string)
	// QueueDepth, when set, gives a device's cloudToDeviceMessageCount: the messages waiting in
	// its cloud-to-device queue. Nil reports 0.
	QueueDepth func(ctx context.Context, deviceID string) int
}

// Registry stores identities in the engine.
type Registry struct {
	ids    *engine.Bucket // identities: d.<id>, m.<id>.<module>
	state  *engine.Bucket // connection state, same keys
	now    func() time.Time
	revoke func(deviceID, moduleID string, code errcode.Code, msg string)
	onDel  func(deviceID, moduleID string)
	depth  func(ctx context.Context, deviceID string) int
}

// New opens (or creates) the registry's buckets.
func New(ctx context.Context, eng *engine.Engine, cfg Config) (*Registry, error) {
	ids, err := eng.KV(ctx, engine.BucketConfig{Name: "registry", Description: "device and module identities"})
	if err != nil {
		return nil, err
	}
	state, err := eng.KV(ctx, engine.BucketConfig{Name: "devstate", Description: "connection state of identities"})
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	revoke := cfg.Revoke
	if revoke == nil {
		revoke = func(string, string, errcode.Code, string) {}
	}
	onDel := cfg.OnDelete
	if onDel == nil {
		onDel = func(string, string) {}
	}
	depth := cfg.QueueDepth
	if depth == nil {
		depth = func(context.Context, string) int { return 0 }
	}
	return &Registry{ids: ids, state: state, now: now, revoke: revoke, onDel: onDel, depth: depth}, nil
}

func deviceKey(id string) string { return "d." + engine.EncodeToken(id) }
func moduleKey(id, mid string) string {
	return "m." + engine.EncodeToken(id) + "." + engine.EncodeToken(mid)
}

// ValidateID checks a device or module id against IoT Hub's rules: 1 to 128 characters, ASCII
// letters and digits plus - : . + % _ # * ? ! ( ) , = @ ; $ '.
func ValidateID(kind, id string) error {
	if id == "" {
		return errcode.New(errcode.ArgumentNull, "%s cannot be empty", kind)
	}
	if len(id) > MaxIDLength {
		return errcode.New(errcode.ArgumentInvalid, "%s is longer than %d characters", kind, MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if !idChar(id[i]) {
			return errcode.New(errcode.ArgumentInvalid,
				"%s '%s' is invalid: it may contain only ASCII letters, digits and - : . + %% _ # * ? ! ( ) , = @ ; $ '",
				kind, printable(id))
		}
	}
	return nil
}

func idChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("-:.+%_#*?!(),=@;$'", c) >= 0
}

// printable makes an untrusted id safe to echo in a message.
func printable(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == ';' {
			sb.WriteString("?")
			continue
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// storedDevice is what the bucket holds: the identity without etag and connection state, which
// come from the entry's revision and the state bucket.
type storedDevice struct {
	DeviceID          string         `json:"deviceId"`
	GenerationID      string         `json:"generationId"`
	Status            string         `json:"status"`
	StatusReason      *string        `json:"statusReason"`
	StatusUpdatedTime Time           `json:"statusUpdatedTime"`
	Authentication    Authentication `json:"authentication"`
	Capabilities      Capabilities   `json:"capabilities"`
	DeviceScope       *string        `json:"deviceScope"`
	ParentScopes      []string       `json:"parentScopes"`
}

type storedModule struct {
	ModuleID       string         `json:"moduleId"`
	DeviceID       string         `json:"deviceId"`
	GenerationID   string         `json:"generationId"`
	Authentication Authentication `json:"authentication"`
	ManagedBy      *string        `json:"managedBy"`
}

// connState is the connection state the device edges write.
type connState struct {
	ConnectionState            string `json:"connectionState"`
	ConnectionStateUpdatedTime Time   `json:"connectionStateUpdatedTime"`
	LastActivityTime           Time   `json:"lastActivityTime"`
}

func (s storedDevice) device(rev uint64, cs connState) Device {
	d := Device{
		DeviceID:                   s.DeviceID,
		GenerationID:               s.GenerationID,
		ETag:                       ETag(rev),
		ConnectionState:            Disconnected,
		Status:                     s.Status,
		StatusReason:               s.StatusReason,
		ConnectionStateUpdatedTime: cs.ConnectionStateUpdatedTime,
		StatusUpdatedTime:          s.StatusUpdatedTime,
		LastActivityTime:           cs.LastActivityTime,
		Authentication:             s.Authentication,
		Capabilities:               s.Capabilities,
		DeviceScope:                s.DeviceScope,
		ParentScopes:               s.ParentScopes,
	}
	if cs.ConnectionState != "" {
		d.ConnectionState = cs.ConnectionState
	}
	if d.ParentScopes == nil {
		d.ParentScopes = []string{}
	}
	return d
}

func (s storedModule) module(rev uint64, cs connState) Module {
	m := Module{
		ModuleID:                   s.ModuleID,
		DeviceID:                   s.DeviceID,
		GenerationID:               s.GenerationID,
		ETag:                       ETag(rev),
		ConnectionState:            Disconnected,
		ConnectionStateUpdatedTime: cs.ConnectionStateUpdatedTime,
		LastActivityTime:           cs.LastActivityTime,
		Authentication:             s.Authentication,
		ManagedBy:                  s.ManagedBy,
	}
	if cs.ConnectionState != "" {
		m.ConnectionState = cs.ConnectionState
	}
	return m
}

func (r *Registry) loadState(ctx context.Context, key string) connState {
	var cs connState
	ent, err := r.state.Get(ctx, key)
	if err == nil {
		_ = json.Unmarshal(ent.Value, &cs)
	}
	return cs
}

func storeErr(err error, what string) error {
	return errcode.Wrap(errcode.ServerError, err, "the registry could not %s", what)
}

// normalizeAuth fills in and checks an identity's authentication. old is the stored value when
// updating (its keys are kept when the request leaves them empty), or nil when creating.
func normalizeAuth(a Authentication, old *Authentication) (Authentication, error) {
	typ := strings.ToLower(strings.TrimSpace(a.Type))
	prim, sec := "", ""
	if a.X509Thumbprint != nil {
		if a.X509Thumbprint.PrimaryThumbprint != nil {
			prim = strings.TrimSpace(*a.X509Thumbprint.PrimaryThumbprint)
		}
		if a.X509Thumbprint.SecondaryThumbprint != nil {
			sec = strings.TrimSpace(*a.X509Thumbprint.SecondaryThumbprint)
		}
	}
	if typ == "" {
		typ = strings.ToLower(AuthSAS)
		if prim != "" || sec != "" {
			typ = strings.ToLower(AuthSelfSigned)
		}
	}
	nullThumbs := &X509Thumbprint{}
	switch typ {
	case strings.ToLower(AuthSAS):
		var keys SymmetricKey
		if a.SymmetricKey != nil {
			keys = *a.SymmetricKey
		}
		if prim != "" || sec != "" {
			return Authentication{}, errcode.New(errcode.ArgumentInvalid, "a sas identity cannot have X.509 thumbprints")
		}
		if old != nil && old.Type == AuthSAS && old.SymmetricKey != nil {
			if keys.PrimaryKey == "" {
				keys.PrimaryKey = old.SymmetricKey.PrimaryKey
			}
			if keys.SecondaryKey == "" {
				keys.SecondaryKey = old.SymmetricKey.SecondaryKey
			}
		}
		for _, k := range []*string{&keys.PrimaryKey, &keys.SecondaryKey} {
			if *k == "" {
				gen, err := sas.GenerateKey()
				if err != nil {
					return Authentication{}, errcode.Wrap(errcode.ServerError, err, "could not generate a key")
				}
				*k = gen
				continue
			}
			if !sas.ValidKey(*k) {
				return Authentication{}, errcode.New(errcode.ArgumentInvalid,
					"the symmetric key is invalid: it must be base64 and decode to 16 to 64 bytes")
			}
		}
		return Authentication{Type: AuthSAS, SymmetricKey: &keys, X509Thumbprint: nullThumbs}, nil
	case strings.ToLower(AuthSelfSigned):
		if a.SymmetricKey != nil && (a.SymmetricKey.PrimaryKey != "" || a.SymmetricKey.SecondaryKey != "") {
			return Authentication{}, errcode.New(errcode.ArgumentInvalid, "a selfSigned identity cannot have symmetric keys")
		}
		if prim == "" {
			return Authentication{}, errcode.New(errcode.ArgumentInvalid, "a selfSigned identity needs a primary thumbprint")
		}
		th := &X509Thumbprint{}
		for _, pair := range []struct {
			in  string
			out **string
		}{{prim, &th.PrimaryThumbprint}, {sec, &th.SecondaryThumbprint}} {
			if pair.in == "" {
				continue
			}
			if !validThumbprint(pair.in) {
				return Authentication{}, errcode.New(errcode.ArgumentInvalid,
					"thumbprint '%s' is invalid: it must be 40 (SHA-1) or 64 (SHA-256) hex digits", printable(pair.in))
			}
			v := strings.ToUpper(strings.ReplaceAll(pair.in, ":", ""))
			*pair.out = &v
		}
		return Authentication{Type: AuthSelfSigned, SymmetricKey: &SymmetricKey{}, X509Thumbprint: th}, nil
	case strings.ToLower(AuthCertificateAuthority), strings.ToLower(AuthNone):
		if a.SymmetricKey != nil && (a.SymmetricKey.PrimaryKey != "" || a.SymmetricKey.SecondaryKey != "") || prim != "" || sec != "" {
			return Authentication{}, errcode.New(errcode.ArgumentInvalid, "a %s identity cannot have keys or thumbprints", a.Type)
		}
		t := AuthCertificateAuthority
		if typ == strings.ToLower(AuthNone) {
			t = AuthNone
		}
		return Authentication{Type: t, SymmetricKey: &SymmetricKey{}, X509Thumbprint: nullThumbs}, nil
	}
	return Authentication{}, errcode.New(errcode.ArgumentInvalid,
		"authentication type '%s' is invalid: use sas, selfSigned, certificateAuthority or none", printable(a.Type))
}

func validThumbprint(s string) bool {
	s = strings.ReplaceAll(s, ":", "")
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func normalizeStatus(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", StatusEnabled:
		return StatusEnabled, nil
	case StatusDisabled:
		return StatusDisabled, nil
	}
	return "", errcode.New(errcode.ArgumentInvalid, "status '%s' is invalid: use enabled or disabled", printable(s))
}

func checkReason(r *string) error {
	if r != nil && len([]rune(*r)) > MaxStatusReasonLength {
		return errcode.New(errcode.ArgumentInvalid, "statusReason is longer than %d characters", MaxStatusReasonLength)
	}
	return nil
}

// CreateDevice registers a new device. Empty SAS keys are generated. An existing id gives 409001.
func (r *Registry) CreateDevice(ctx context.Context, d Device) (Device, error) {
	if err := ValidateID("DeviceId", d.DeviceID); err != nil {
		return Device{}, err
	}
	st, err := r.newStoredDevice(d, nil)
	if err != nil {
		return Device{}, err
	}
	b, _ := json.Marshal(st)
	rev, err := r.ids.Create(ctx, deviceKey(d.DeviceID), b)
	if errors.Is(err, engine.ErrExists) {
		return Device{}, errcode.New(errcode.DeviceAlreadyExists, "A device with ID '%s' is already registered.", d.DeviceID)
	}
	if err != nil {
		return Device{}, storeErr(err, "store the device")
	}
	// A new incarnation starts disconnected, whatever an earlier one left behind.
	_ = r.state.Delete(ctx, deviceKey(d.DeviceID), 0)
	return st.device(rev, connState{}), nil
}

func (r *Registry) newStoredDevice(d Device, old *storedDevice) (storedDevice, error) {
	status, err := normalizeStatus(d.Status)
	if err != nil {
		return storedDevice{}, err
	}
	if err := checkReason(d.StatusReason); err != nil {
		return storedDevice{}, err
	}
	var oldAuth *Authentication
	if old != nil {
		oldAuth = &old.Authentication
	}
	auth, err := normalizeAuth(d.Authentication, oldAuth)
	if err != nil {
		return storedDevice{}, err
	}
	now := r.now().UTC()
	st := storedDevice{
		DeviceID:       d.DeviceID,
		Status:         status,
		StatusReason:   d.StatusReason,
		Authentication: auth,
		Capabilities:   d.Capabilities,
		DeviceScope:    d.DeviceScope,
		ParentScopes:   d.ParentScopes,
	}
	if old == nil {
		st.GenerationID = generationID(now)
		st.StatusUpdatedTime = Time{now}
	} else {
		st.GenerationID = old.GenerationID
		st.StatusUpdatedTime = old.StatusUpdatedTime
		if old.Status != status {
			st.StatusUpdatedTime = Time{now}
		}
	}
	if st.Capabilities.IoTEdge && st.DeviceScope == nil {
		scope := "ms-azure-iot-edge://" + d.DeviceID + "-" + st.GenerationID
		st.DeviceScope = &scope
	}
	return st, nil
}

func (r *Registry) getStoredDevice(ctx context.Context, id string) (storedDevice, uint64, error) {
	ent, err := r.ids.Get(ctx, deviceKey(id))
	if errors.Is(err, engine.ErrNotFound) {
		return storedDevice{}, 0, errcode.New(errcode.DeviceNotFound, "Device %s not registered", id)
	}
	if err != nil {
		return storedDevice{}, 0, storeErr(err, "read the device")
	}
	var st storedDevice
	if err := json.Unmarshal(ent.Value, &st); err != nil {
		return storedDevice{}, 0, storeErr(err, "decode the device")
	}
	return st, ent.Revision, nil
}

// GetDevice returns a device, or 404001 DeviceNotFound.
func (r *Registry) GetDevice(ctx context.Context, id string) (Device, error) {
	if err := ValidateID("DeviceId", id); err != nil {
		return Device{}, err
	}
	st, rev, err := r.getStoredDevice(ctx, id)
	if err != nil {
		return Device{}, err
	}
	d := st.device(rev, r.loadState(ctx, deviceKey(id)))
	d.CloudToDeviceMessageCount = r.depth(ctx, id)
	return d, nil
}

// LookupDevice returns a device's stored identity (status, generationId, authentication) with
// one read: connectionState, lastActivityTime and cloudToDeviceMessageCount are left at their
// zero values. It is for hot paths that need only the identity; 404001 if there is none.
func (r *Registry) LookupDevice(ctx context.Context, id string) (Device, error) {
	if err := ValidateID("DeviceId", id); err != nil {
		return Device{}, err
	}
	st, rev, err := r.getStoredDevice(ctx, id)
	if err != nil {
		return Device{}, err
	}
	return st.device(rev, connState{}), nil
}

// etagMismatch is the 412 for an If-Match that no longer matches.
func etagMismatch(ifMatch, what string) error {
	return errcode.New(errcode.PreconditionFailed,
		"Precondition failed: the etag '%s' does not match the current etag of %s", printable(NormalizeETag(ifMatch)), what)
}

// checkETag compares an If-Match value with the current revision.
func checkETag(ifMatch string, rev uint64, what string) error {
	if ifMatch == "" || IsWildcard(ifMatch) {
		return nil
	}
	if got, ok := ParseETag(ifMatch); ok && got == rev {
		return nil
	}
	return etagMismatch(ifMatch, what)
}

// UpdateDevice replaces a device's writable fields (status, statusReason, authentication,
// capabilities, scopes). ifMatch is the caller's etag; empty or "*" updates unconditionally.
// SAS keys left empty keep their stored values.
func (r *Registry) UpdateDevice(ctx context.Context, d Device, ifMatch string) (Device, error) {
	if err := ValidateID("DeviceId", d.DeviceID); err != nil {
		return Device{}, err
	}
	for attempt := 0; ; attempt++ {
		old, rev, err := r.getStoredDevice(ctx, d.DeviceID)
		if err != nil {
			return Device{}, err
		}
		if err := checkETag(ifMatch, rev, "device "+d.DeviceID); err != nil {
			return Device{}, err
		}
		st, err := r.newStoredDevice(d, &old)
		if err != nil {
			return Device{}, err
		}
		b, _ := json.Marshal(st)
		nrev, err := r.ids.Update(ctx, deviceKey(d.DeviceID), b, rev)
		if errors.Is(err, engine.ErrRevisionMismatch) {
			if ifMatch != "" && !IsWildcard(ifMatch) || attempt >= 20 {
				return Device{}, etagMismatch(ifMatch, "device "+d.DeviceID)
			}
			continue // someone else wrote in between; read again and re-apply
		}
		if err != nil {
			return Device{}, storeErr(err, "update the device")
		}
		if st.Status == StatusDisabled && old.Status != StatusDisabled {
			r.revokeAll(ctx, d.DeviceID, errcode.IotHubUnauthorizedAccess, "the device was disabled")
		}
		return st.device(nrev, r.loadState(ctx, deviceKey(d.DeviceID))), nil
	}
}

// DeleteDevice removes a device and its modules. ifMatch as for [Registry.UpdateDevice].
func (r *Registry) DeleteDevice(ctx context.Context, id, ifMatch string) error {
	if err := ValidateID("DeviceId", id); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		_, rev, err := r.getStoredDevice(ctx, id)
		if err != nil {
			return err
		}
		if err := checkETag(ifMatch, rev, "device "+id); err != nil {
			return err
		}
		err = r.ids.Delete(ctx, deviceKey(id), rev)
		if errors.Is(err, engine.ErrRevisionMismatch) {
			if ifMatch != "" && !IsWildcard(ifMatch) || attempt >= 20 {
				return etagMismatch(ifMatch, "device "+id)
			}
			continue
		}
		if err != nil {
			return storeErr(err, "delete the device")
		}
		break
	}
	r.revoke(id, "", errcode.DeviceNotFound, "the device was deleted")
	_ = r.state.Delete(ctx, deviceKey(id), 0)
	r.onDel(id, "")
	keys, err := r.moduleKeys(ctx, id)
	if err != nil {
		return storeErr(err, "list the device's modules")
	}
	for _, k := range keys {
		if _, mid, ok := splitModuleKey(k); ok {
			r.revoke(id, mid, errcode.DeviceNotFound, "the device was deleted")
		}
		_ = r.ids.Delete(ctx, k, 0)
		_ = r.state.Delete(ctx, k, 0)
		if _, mid, ok := splitModuleKey(k); ok {
			r.onDel(id, mid)
		}
	}
	return nil
}

// revokeAll closes the connections of a device and its modules.
func (r *Registry) revokeAll(ctx context.Context, id string, code errcode.Code, msg string) {
	r.revoke(id, "", code, msg)
	keys, _ := r.moduleKeys(ctx, id)
	for _, k := range keys {
		if _, mid, ok := splitModuleKey(k); ok {
			r.revoke(id, mid, code, msg)
		}
	}
}

// moduleKeys returns the keys of a device's modules. Most devices never had one: the engine says
// so in one request, where listing them sets up a consumer (about half a millisecond, which bulk
// deletes and disables of many devices paid per device).
func (r *Registry) moduleKeys(ctx context.Context, id string) ([]string, error) {
	filter := "m." + engine.EncodeToken(id) + ".*"
	if maybe, err := r.ids.MayHaveKeys(ctx, filter); err == nil && !maybe {
		return nil, nil
	}
	var keys []string
	err := r.ids.Scan(ctx, []string{filter}, func(e engine.Entry) bool { keys = append(keys, e.Key); return true })
	return keys, err
}

func splitModuleKey(k string) (dev, mod string, ok bool) {
	parts := strings.Split(k, ".")
	if len(parts) != 3 || parts[0] != "m" {
		return "", "", false
	}
	dev, err1 := engine.DecodeToken(parts[1])
	mod, err2 := engine.DecodeToken(parts[2])
	return dev, mod, err1 == nil && err2 == nil
}

// ListDevices returns up to top devices (1 to 1000; other values mean 1000).
func (r *Registry) ListDevices(ctx context.Context, top int) ([]Device, error) {
	if top <= 0 || top > MaxListTop {
		top = MaxListTop
	}
	out := make([]Device, 0, 16)
	var scanErr error
	err := r.ids.Scan(ctx, []string{"d.*"}, func(e engine.Entry) bool {
		var st storedDevice
		if err := json.Unmarshal(e.Value, &st); err != nil {
			scanErr = err
			return false
		}
		d := st.device(e.Revision, r.loadState(ctx, e.Key))
		d.CloudToDeviceMessageCount = r.depth(ctx, d.DeviceID)
		out = append(out, d)
		return len(out) < top
	})
	if err == nil {
		err = scanErr
	}
	if err != nil {
		return nil, storeErr(err, "list devices")
	}
	return out, nil
}

// Stats counts devices.
type Stats struct {
	TotalDeviceCount    int `json:"totalDeviceCount"`
	EnabledDeviceCount  int `json:"enabledDeviceCount"`
	DisabledDeviceCount int `json:"disabledDeviceCount"`
}

// Statistics counts all devices by status. It reads the whole registry.
func (r *Registry) Statistics(ctx context.Context) (Stats, error) {
	var s Stats
	err := r.ids.Scan(ctx, []string{"d.*"}, func(e engine.Entry) bool {
		var st struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(e.Value, &st)
		s.TotalDeviceCount++
		if st.Status == StatusDisabled {
			s.DisabledDeviceCount++
		} else {
			s.EnabledDeviceCount++
		}
		return true
	})
	if err != nil {
		return Stats{}, storeErr(err, "count devices")
	}
	return s, nil
}

// CreateModule registers a module on an existing device.
func (r *Registry) CreateModule(ctx context.Context, m Module) (Module, error) {
	if err := ValidateID("DeviceId", m.DeviceID); err != nil {
		return Module{}, err
	}
	if err := ValidateID("ModuleId", m.ModuleID); err != nil {
		return Module{}, err
	}
	if _, _, err := r.getStoredDevice(ctx, m.DeviceID); err != nil {
		return Module{}, err
	}
	n := 0
	if err := r.ids.Scan(ctx, []string{"m." + engine.EncodeToken(m.DeviceID) + ".*"}, func(engine.Entry) bool { n++; return true }); err != nil {
		return Module{}, storeErr(err, "count modules")
	}
	if n >= MaxModulesPerDevice {
		return Module{}, errcode.New(errcode.TooManyModulesOnDevice, "device %s already has %d modules", m.DeviceID, n)
	}
	auth, err := normalizeAuth(m.Authentication, nil)
	if err != nil {
		return Module{}, err
	}
	st := storedModule{ModuleID: m.ModuleID, DeviceID: m.DeviceID, GenerationID: generationID(r.now()), Authentication: auth, ManagedBy: m.ManagedBy}
	b, _ := json.Marshal(st)
	rev, err := r.ids.Create(ctx, moduleKey(m.DeviceID, m.ModuleID), b)
	if errors.Is(err, engine.ErrExists) {
		return Module{}, errcode.New(errcode.ModuleAlreadyExistsOnDevice, "A module with ID '%s' already exists on device '%s'.", m.ModuleID, m.DeviceID)
	}
	if err != nil {
		return Module{}, storeErr(err, "store the module")
	}
	_ = r.state.Delete(ctx, moduleKey(m.DeviceID, m.ModuleID), 0)
	return st.module(rev, connState{}), nil
}

func (r *Registry) getStoredModule(ctx context.Context, id, mid string) (storedModule, uint64, error) {
	ent, err := r.ids.Get(ctx, moduleKey(id, mid))
	if errors.Is(err, engine.ErrNotFound) {
		if _, _, derr := r.getStoredDevice(ctx, id); derr != nil {
			return storedModule{}, 0, derr
		}
		return storedModule{}, 0, errcode.New(errcode.ModuleNotFound, "Module %s on device %s not registered", mid, id)
	}
	if err != nil {
		return storedModule{}, 0, storeErr(err, "read the module")
	}
	var st storedModule
	if err := json.Unmarshal(ent.Value, &st); err != nil {
		return storedModule{}, 0, storeErr(err, "decode the module")
	}
	return st, ent.Revision, nil
}

// GetModule returns a module, or 404010 ModuleNotFound (404001 when the device is missing).
func (r *Registry) GetModule(ctx context.Context, id, mid string) (Module, error) {
	if err := ValidateID("DeviceId", id); err != nil {
		return Module{}, err
	}
	if err := ValidateID("ModuleId", mid); err != nil {
		return Module{}, err
	}
	st, rev, err := r.getStoredModule(ctx, id, mid)
	if err != nil {
		return Module{}, err
	}
	return st.module(rev, r.loadState(ctx, moduleKey(id, mid))), nil
}

// UpdateModule replaces a module's authentication and managedBy.
func (r *Registry) UpdateModule(ctx context.Context, m Module, ifMatch string) (Module, error) {
	if err := ValidateID("DeviceId", m.DeviceID); err != nil {
		return Module{}, err
	}
	if err := ValidateID("ModuleId", m.ModuleID); err != nil {
		return Module{}, err
	}
	for attempt := 0; ; attempt++ {
		old, rev, err := r.getStoredModule(ctx, m.DeviceID, m.ModuleID)
		if err != nil {
			return Module{}, err
		}
		what := fmt.Sprintf("module %s on device %s", m.ModuleID, m.DeviceID)
		if err := checkETag(ifMatch, rev, what); err != nil {
			return Module{}, err
		}
		auth, err := normalizeAuth(m.Authentication, &old.Authentication)
		if err != nil {
			return Module{}, err
		}
		st := old
		st.Authentication = auth
		st.ManagedBy = m.ManagedBy
		b, _ := json.Marshal(st)
		nrev, err := r.ids.Update(ctx, moduleKey(m.DeviceID, m.ModuleID), b, rev)
		if errors.Is(err, engine.ErrRevisionMismatch) {
			if ifMatch != "" && !IsWildcard(ifMatch) || attempt >= 20 {
				return Module{}, etagMismatch(ifMatch, what)
			}
			continue
		}
		if err != nil {
			return Module{}, storeErr(err, "update the module")
		}
		return st.module(nrev, r.loadState(ctx, moduleKey(m.DeviceID, m.ModuleID))), nil
	}
}

// DeleteModule removes a module.
func (r *Registry) DeleteModule(ctx context.Context, id, mid, ifMatch string) error {
	if err := ValidateID("DeviceId", id); err != nil {
		return err
	}
	if err := ValidateID("ModuleId", mid); err != nil {
		return err
	}
	what := fmt.Sprintf("module %s on device %s", mid, id)
	for attempt := 0; ; attempt++ {
		_, rev, err := r.getStoredModule(ctx, id, mid)
		if err != nil {
			return err
		}
		if err := checkETag(ifMatch, rev, what); err != nil {
			return err
		}
		err = r.ids.Delete(ctx, moduleKey(id, mid), rev)
		if errors.Is(err, engine.ErrRevisionMismatch) {
			if ifMatch != "" && !IsWildcard(ifMatch) || attempt >= 20 {
				return etagMismatch(ifMatch, what)
			}
			continue
		}
		if err != nil {
			return storeErr(err, "delete the module")
		}
		r.revoke(id, mid, errcode.ModuleNotFound, "the module was deleted")
		_ = r.state.Delete(ctx, moduleKey(id, mid), 0)
		r.onDel(id, mid)
		return nil
	}
}

// ListModules returns the modules of a device (404001 when the device is missing).
func (r *Registry) ListModules(ctx context.Context, id string) ([]Module, error) {
	if err := ValidateID("DeviceId", id); err != nil {
		return nil, err
	}
	if _, _, err := r.getStoredDevice(ctx, id); err != nil {
		return nil, err
	}
	out := []Module{}
	err := r.ids.Scan(ctx, []string{"m." + engine.EncodeToken(id) + ".*"}, func(e engine.Entry) bool {
		var st storedModule
		if json.Unmarshal(e.Value, &st) == nil {
			out = append(out, st.module(e.Revision, r.loadState(ctx, e.Key)))
		}
		return true
	})
	if err != nil {
		return nil, storeErr(err, "list modules")
	}
	return out, nil
}

// SetConnectionState records that an identity connected or disconnected at a time. The device
// edges call it; it does not change the identity's etag.
func (r *Registry) SetConnectionState(ctx context.Context, id, mid string, connected bool, at time.Time) error {
	key := deviceKey(id)
	if mid != "" {
		key = moduleKey(id, mid)
	}
	// A connect sets every field, so only a disconnect reads what is stored (lastActivityTime).
	var cs connState
	if connected {
		cs.ConnectionState = Connected
		cs.LastActivityTime = Time{at.UTC()}
	} else {
		cs = r.loadState(ctx, key)
		cs.ConnectionState = Disconnected
	}
	cs.ConnectionStateUpdatedTime = Time{at.UTC()}
	b, _ := json.Marshal(cs)
	_, err := r.state.Put(ctx, key, b)
	return err
}

// RecordActivity moves an identity's lastActivityTime forward.
func (r *Registry) RecordActivity(ctx context.Context, id, mid string, at time.Time) error {
	key := deviceKey(id)
	if mid != "" {
		key = moduleKey(id, mid)
	}
	cs := r.loadState(ctx, key)
	if !at.After(cs.LastActivityTime.Time) {
		return nil
	}
	cs.LastActivityTime = Time{at.UTC()}
	b, _ := json.Marshal(cs)
	_, err := r.state.Put(ctx, key, b)
	return err
}
