package sas

import (
	"fmt"
	"strings"
)

// Connection-string keys, spelled (and matched case-sensitively) as the Azure SDKs spell them.
const (
	keyHostName              = "HostName"
	keyDeviceID              = "DeviceId"
	keyModuleID              = "ModuleId"
	keySharedAccessKeyName   = "SharedAccessKeyName"
	keySharedAccessKey       = "SharedAccessKey"
	keyGatewayHostName       = "GatewayHostName"
	keyX509                  = "x509"
	keySharedAccessSignature = "SharedAccessSignature"
)

// ConnectionString is a parsed IoT Hub connection string, service or device.
//
// A service string carries HostName, SharedAccessKeyName and SharedAccessKey; a device string
// carries HostName and DeviceId (and ModuleId for a module) plus exactly one credential: a
// SharedAccessKey, x509=true, or a SharedAccessSignature.
type ConnectionString struct {
	HostName            string // the hub's host name, used in the SAS resource and MQTT user name
	SharedAccessKeyName string // policy name; "" for a device key
	SharedAccessKey     string // base64 key of the policy or device
	DeviceID            string // "" for a service connection string
	ModuleID            string // "" unless the string is for a module
	GatewayHostName     string // host to dial instead of HostName; "" means dial HostName
	X509                bool   // "x509=true": the device authenticates with a client certificate

	// SharedAccessSignature is a ready-made token used instead of a key
	// ("SharedAccessSignature sr=...&sig=...&se=...").
	SharedAccessSignature string
}

// ParseConnectionString parses s the way the Node and Python SDKs do: s is split on ';', each
// part is split at its first '=' (values may contain '='), empty parts and parts with an empty
// value are skipped, the last of duplicate keys wins, and keys are case-sensitive. Unknown keys
// (such as the C SDK's UseProvisioning) are ignored.
//
// It returns an error wrapping [ErrMalformed] when a part has no '=' or an empty key, when
// HostName is missing, when there is no credential (SharedAccessKey, x509=true or
// SharedAccessSignature) or more than one, when x509 is not "true" or "false", or when ModuleId
// is given without DeviceId.
func ParseConnectionString(s string) (ConnectionString, error) {
	var c ConnectionString
	var x509 string
	i := 0
	for part := range strings.SplitSeq(s, ";") {
		i++
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			// The part is not quoted: it may be a mangled key.
			return ConnectionString{}, fmt.Errorf("sas: connection string part %d is not key=value: %w", i, ErrMalformed)
		}
		if v == "" {
			continue
		}
		switch k {
		case keyHostName:
			c.HostName = v
		case keySharedAccessKeyName:
			c.SharedAccessKeyName = v
		case keySharedAccessKey:
			c.SharedAccessKey = v
		case keyDeviceID:
			c.DeviceID = v
		case keyModuleID:
			c.ModuleID = v
		case keyGatewayHostName:
			c.GatewayHostName = v
		case keyX509:
			x509 = v
		case keySharedAccessSignature:
			c.SharedAccessSignature = v
		}
	}
	switch {
	case x509 == "" || strings.EqualFold(x509, "false"):
	case strings.EqualFold(x509, "true"):
		c.X509 = true
	default:
		return ConnectionString{}, fmt.Errorf("sas: connection string x509=%q, want true or false: %w", truncate(x509), ErrMalformed)
	}
	if c.HostName == "" {
		return ConnectionString{}, fmt.Errorf("sas: connection string has no HostName: %w", ErrMalformed)
	}
	creds := 0
	if c.SharedAccessKey != "" {
		creds++
	}
	if c.X509 {
		creds++
	}
	if c.SharedAccessSignature != "" {
		creds++
	}
	switch {
	case creds == 0:
		return ConnectionString{}, fmt.Errorf("sas: connection string has no SharedAccessKey, x509=true or SharedAccessSignature: %w", ErrMalformed)
	case creds > 1:
		return ConnectionString{}, fmt.Errorf("sas: connection string may have only one of SharedAccessKey, x509=true and SharedAccessSignature: %w", ErrMalformed)
	}
	if c.ModuleID != "" && c.DeviceID == "" {
		return ConnectionString{}, fmt.Errorf("sas: connection string has ModuleId without DeviceId: %w", ErrMalformed)
	}
	return c, nil
}

// String returns c in canonical order, HostName;DeviceId;ModuleId;SharedAccessKeyName;
// SharedAccessKey;GatewayHostName;x509;SharedAccessSignature, leaving out empty fields. The
// result contains the key in clear: use [ConnectionString.Redacted] for logs. Values that contain
// ';' cannot be represented; [ParseConnectionString] never produces them.
func (c ConnectionString) String() string { return c.format(false) }

// Redacted is like [ConnectionString.String] but replaces the key and the signature with
// "REDACTED", for logs and error messages.
func (c ConnectionString) Redacted() string { return c.format(true) }

func (c ConnectionString) format(redact bool) string {
	var b strings.Builder
	add := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
	}
	secret := func(v string) string {
		if redact && v != "" {
			return "REDACTED"
		}
		return v
	}
	add(keyHostName, c.HostName)
	add(keyDeviceID, c.DeviceID)
	add(keyModuleID, c.ModuleID)
	add(keySharedAccessKeyName, c.SharedAccessKeyName)
	add(keySharedAccessKey, secret(c.SharedAccessKey))
	add(keyGatewayHostName, c.GatewayHostName)
	if c.X509 {
		add(keyX509, "true")
	}
	add(keySharedAccessSignature, secret(c.SharedAccessSignature))
	return b.String()
}

// truncate shortens untrusted text quoted in an error message.
func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
