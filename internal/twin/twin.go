package twin

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/roost-iot/roost/internal/registry"
)

// Twin is a device or module twin as the service API shows it. Its JSON form is IoT Hub's:
//
//	{"deviceId":"d1","etag":"AAAAAAAAAAU=","deviceEtag":"MTI=","status":"enabled",...,
//	 "version":3,"tags":{...},"properties":{"desired":{...,"$metadata":{...},"$version":2},
//	 "reported":{...,"$metadata":{...},"$version":4}},"capabilities":{"iotEdge":false}}
type Twin struct {
	id   identity
	doc  *stored
	etag string
}

// DeviceID returns the device the twin belongs to.
func (t *Twin) DeviceID() string {
	if t.id.module != nil {
		return t.id.module.DeviceID
	}
	return t.id.device.DeviceID
}

// ModuleID returns the module the twin belongs to, or "" for a device twin.
func (t *Twin) ModuleID() string {
	if t.id.module != nil {
		return t.id.module.ModuleID
	}
	return ""
}

// ETag returns the twin's etag (unquoted).
func (t *Twin) ETag() string { return t.etag }

// Version returns the twin's version: it counts changes to tags and desired properties.
func (t *Twin) Version() int64 { return t.doc.Version }

// DesiredVersion returns properties.desired.$version.
func (t *Twin) DesiredVersion() int64 { return t.doc.DesiredVersion }

// ReportedVersion returns properties.reported.$version.
func (t *Twin) ReportedVersion() int64 { return t.doc.ReportedVersion }

// MarshalJSON writes the twin in IoT Hub's shape and field order.
func (t *Twin) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	w := &objWriter{buf: &buf}
	buf.WriteByte('{')
	var (
		auth  registry.Authentication
		state string
		last  registry.Time
		c2d   int
		devEt string
	)
	if m := t.id.module; m != nil {
		w.field("deviceId", m.DeviceID)
		w.field("moduleId", m.ModuleID)
		auth, state, last, c2d, devEt = m.Authentication, m.ConnectionState, m.LastActivityTime, m.CloudToDeviceMessageCount, m.ETag
		w.field("etag", t.etag)
		w.field("deviceEtag", devEt)
	} else {
		d := t.id.device
		auth, state, last, c2d, devEt = d.Authentication, d.ConnectionState, d.LastActivityTime, d.CloudToDeviceMessageCount, d.ETag
		w.field("deviceId", d.DeviceID)
		w.field("etag", t.etag)
		w.field("deviceEtag", devEt)
		w.field("status", d.Status)
		if d.StatusReason != nil {
			w.field("statusReason", *d.StatusReason)
		}
		w.field("statusUpdateTime", formatTime(d.StatusUpdatedTime.Time))
	}
	w.field("connectionState", state)
	w.field("lastActivityTime", formatTime(last.Time))
	w.field("cloudToDeviceMessageCount", c2d)
	w.field("authenticationType", auth.Type)
	thumbs := registry.X509Thumbprint{}
	if auth.X509Thumbprint != nil {
		thumbs = *auth.X509Thumbprint
	}
	w.field("x509Thumbprint", thumbs)
	w.field("modelId", "")
	w.field("version", t.doc.Version)
	w.field("tags", t.doc.Tags)
	if w.err != nil {
		return nil, w.err
	}
	buf.WriteString(`,"properties":{"desired":`)
	if err := writeSection(&buf, t.doc.Desired, t.doc.DesiredMeta, t.doc.DesiredVersion); err != nil {
		return nil, err
	}
	buf.WriteString(`,"reported":`)
	if err := writeSection(&buf, t.doc.Reported, t.doc.ReportedMeta, t.doc.ReportedVersion); err != nil {
		return nil, err
	}
	buf.WriteByte('}')
	if d := t.id.device; d != nil {
		w.field("capabilities", d.Capabilities)
		if d.DeviceScope != nil {
			w.field("deviceScope", *d.DeviceScope)
		}
		if len(d.ParentScopes) > 0 {
			w.field("parentScopes", d.ParentScopes)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), w.err
}

// objWriter appends "name":value members to a JSON object under construction.
type objWriter struct {
	buf *bytes.Buffer
	n   int
	err error
}

func (w *objWriter) field(name string, v any) {
	if w.err != nil {
		return
	}
	b, err := marshal(v)
	if err != nil {
		w.err = err
		return
	}
	if w.n > 0 || w.buf.Len() > 1 {
		w.buf.WriteByte(',')
	}
	w.n++
	w.buf.WriteString(strconv.Quote(name))
	w.buf.WriteByte(':')
	w.buf.Write(b)
}

var _ json.Marshaler = (*Twin)(nil)
