package registry

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Device is a device identity as the service API shows it.
type Device struct {
	DeviceID                   string         `json:"deviceId"`
	GenerationID               string         `json:"generationId"`
	ETag                       string         `json:"etag"`
	ConnectionState            string         `json:"connectionState"`
	Status                     string         `json:"status"`
	StatusReason               *string        `json:"statusReason"`
	ConnectionStateUpdatedTime Time           `json:"connectionStateUpdatedTime"`
	StatusUpdatedTime          Time           `json:"statusUpdatedTime"`
	LastActivityTime           Time           `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int            `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication `json:"authentication"`
	Capabilities               Capabilities   `json:"capabilities"`
	DeviceScope                *string        `json:"deviceScope"`
	ParentScopes               []string       `json:"parentScopes"`
}

// Module is a module identity on a device. Modules have no status of their own.
type Module struct {
	ModuleID                   string         `json:"moduleId"`
	DeviceID                   string         `json:"deviceId"`
	GenerationID               string         `json:"generationId"`
	ETag                       string         `json:"etag"`
	ConnectionState            string         `json:"connectionState"`
	ConnectionStateUpdatedTime Time           `json:"connectionStateUpdatedTime"`
	LastActivityTime           Time           `json:"lastActivityTime"`
	CloudToDeviceMessageCount  int            `json:"cloudToDeviceMessageCount"`
	Authentication             Authentication `json:"authentication"`
	ManagedBy                  *string        `json:"managedBy"`
}

// Authentication says how an identity proves itself.
type Authentication struct {
	SymmetricKey   *SymmetricKey   `json:"symmetricKey"`
	X509Thumbprint *X509Thumbprint `json:"x509Thumbprint"`
	Type           string          `json:"type"`
}

// SymmetricKey holds an identity's two base64 keys. Empty keys are written as null.
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// MarshalJSON writes empty keys as null, as IoT Hub does for non-SAS identities.
func (k SymmetricKey) MarshalJSON() ([]byte, error) {
	type wire struct {
		PrimaryKey   *string `json:"primaryKey"`
		SecondaryKey *string `json:"secondaryKey"`
	}
	var w wire
	if k.PrimaryKey != "" {
		w.PrimaryKey = &k.PrimaryKey
	}
	if k.SecondaryKey != "" {
		w.SecondaryKey = &k.SecondaryKey
	}
	return json.Marshal(w)
}

// UnmarshalJSON accepts null keys.
func (k *SymmetricKey) UnmarshalJSON(b []byte) error {
	var w struct {
		PrimaryKey   *string `json:"primaryKey"`
		SecondaryKey *string `json:"secondaryKey"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*k = SymmetricKey{}
	if w.PrimaryKey != nil {
		k.PrimaryKey = *w.PrimaryKey
	}
	if w.SecondaryKey != nil {
		k.SecondaryKey = *w.SecondaryKey
	}
	return nil
}

// X509Thumbprint holds an identity's two certificate thumbprints (hex SHA-1 or SHA-256).
type X509Thumbprint struct {
	PrimaryThumbprint   *string `json:"primaryThumbprint"`
	SecondaryThumbprint *string `json:"secondaryThumbprint"`
}

// Capabilities of a device.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// Authentication types.
const (
	AuthSAS                  = "sas"
	AuthSelfSigned           = "selfSigned"
	AuthCertificateAuthority = "certificateAuthority"
	AuthNone                 = "none"
)

// Status and connection-state values.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"

	Connected    = "Connected"
	Disconnected = "Disconnected"
)

// Time is a timestamp in IoT Hub's JSON form: never-set times are "0001-01-01T00:00:00".
type Time struct{ time.Time }

const zeroTime = "0001-01-01T00:00:00"

// MarshalJSON writes the zero time as IoT Hub does and others as RFC 3339 with 7 fractional
// digits, as the hub's .NET serializer does.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte(`"` + zeroTime + `"`), nil
	}
	return []byte(`"` + t.UTC().Format("2006-01-02T15:04:05.0000000Z") + `"`), nil
}

// UnmarshalJSON accepts RFC 3339 times, IoT Hub's zero time and null.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == nil || *s == "" || strings.HasPrefix(*s, "0001-01-01") {
		t.Time = time.Time{}
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02T15:04:05"} {
		if v, err := time.Parse(layout, *s); err == nil {
			t.Time = v.UTC()
			return nil
		}
	}
	// Unknown forms in read-only fields are ignored rather than failing the whole request.
	t.Time = time.Time{}
	return nil
}

// ETag encodes an engine revision as an opaque etag (base64 of its decimal form, like IoT Hub's).
func ETag(rev uint64) string {
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatUint(rev, 10)))
}

// ParseETag returns the revision an etag encodes. It strips quotes and a weak "W/" prefix.
func ParseETag(s string) (uint64, bool) {
	s = NormalizeETag(s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return 0, false
	}
	rev, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil || rev == 0 {
		return 0, false
	}
	return rev, true
}

// NormalizeETag strips a weak prefix and surrounding quotes from an If-Match value.
func NormalizeETag(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	return s
}

// IsWildcard reports whether an If-Match value matches any etag ("*" or the quoted form the
// SDKs send).
func IsWildcard(s string) bool { return NormalizeETag(s) == "*" }

// generationID returns an 18-digit decimal id, like .NET ticks, unique per identity incarnation.
func generationID(now time.Time) string {
	const ticksAtUnixEpoch = 621355968000000000
	return strconv.FormatInt(now.UnixNano()/100+ticksAtUnixEpoch, 10)
}
