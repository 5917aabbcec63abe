package sas

import (
	"errors"
	"strings"
	"testing"
)

const devKey = "YWJjZGVmZ2hpamtsbW5vcA==" // base64 ends in '='

var connStringCases = []struct {
	name      string
	in        string
	want      ConnectionString
	canonical string // String(); "" means the same as in
}{
	{
		name: "service",
		in:   "HostName=h.example.com;SharedAccessKeyName=iothubowner;SharedAccessKey=" + testKey,
		want: ConnectionString{HostName: "h.example.com", SharedAccessKeyName: "iothubowner", SharedAccessKey: testKey},
	},
	{
		name: "device key with '=' in the value",
		in:   "HostName=h;DeviceId=d1;SharedAccessKey=" + devKey,
		want: ConnectionString{HostName: "h", DeviceID: "d1", SharedAccessKey: devKey},
	},
	{
		name:      "module, fields in another order",
		in:        "SharedAccessKey=" + devKey + ";ModuleId=m1;DeviceId=d1;HostName=h",
		want:      ConnectionString{HostName: "h", DeviceID: "d1", ModuleID: "m1", SharedAccessKey: devKey},
		canonical: "HostName=h;DeviceId=d1;ModuleId=m1;SharedAccessKey=" + devKey,
	},
	{
		name: "device with policy key and gateway",
		in:   "HostName=h;DeviceId=d1;SharedAccessKeyName=device;SharedAccessKey=" + devKey + ";GatewayHostName=node2.local",
		want: ConnectionString{HostName: "h", DeviceID: "d1", SharedAccessKeyName: "device", SharedAccessKey: devKey, GatewayHostName: "node2.local"},
	},
	{
		name: "x509",
		in:   "HostName=h;DeviceId=d1;x509=true",
		want: ConnectionString{HostName: "h", DeviceID: "d1", X509: true},
	},
	{
		name:      "x509 upper-case value",
		in:        "HostName=h;DeviceId=d1;x509=TRUE",
		want:      ConnectionString{HostName: "h", DeviceID: "d1", X509: true},
		canonical: "HostName=h;DeviceId=d1;x509=true",
	},
	{
		name:      "x509=false with a key",
		in:        "HostName=h;DeviceId=d1;x509=false;SharedAccessKey=" + devKey,
		want:      ConnectionString{HostName: "h", DeviceID: "d1", SharedAccessKey: devKey},
		canonical: "HostName=h;DeviceId=d1;SharedAccessKey=" + devKey,
	},
	{
		name: "pre-made token full of '=' and '&'",
		in:   "HostName=h;DeviceId=d1;SharedAccessSignature=SharedAccessSignature sr=h%2Fdevices%2Fd1&sig=" + deviceSigURL + "&se=" + testSE,
		want: ConnectionString{HostName: "h", DeviceID: "d1", SharedAccessSignature: "SharedAccessSignature sr=h%2Fdevices%2Fd1&sig=" + deviceSigURL + "&se=" + testSE},
	},
	{
		name:      "last duplicate wins",
		in:        "HostName=a;HostName=b;DeviceId=d1;SharedAccessKey=x;SharedAccessKey=" + devKey,
		want:      ConnectionString{HostName: "b", DeviceID: "d1", SharedAccessKey: devKey},
		canonical: "HostName=b;DeviceId=d1;SharedAccessKey=" + devKey,
	},
	{
		name:      "empty parts and empty values skipped",
		in:        ";;HostName=h;;DeviceId=d1;ModuleId=;SharedAccessKey=" + devKey + ";",
		want:      ConnectionString{HostName: "h", DeviceID: "d1", SharedAccessKey: devKey},
		canonical: "HostName=h;DeviceId=d1;SharedAccessKey=" + devKey,
	},
	{
		name:      "unknown key ignored",
		in:        "HostName=h;DeviceId=d1;SharedAccessKey=" + devKey + ";UseProvisioning=true",
		want:      ConnectionString{HostName: "h", DeviceID: "d1", SharedAccessKey: devKey},
		canonical: "HostName=h;DeviceId=d1;SharedAccessKey=" + devKey,
	},
	{
		name:      "wrongly cased key is unknown",
		in:        "HostName=h;deviceid=x;DeviceId=d1;SharedAccessKey=" + devKey,
		want:      ConnectionString{HostName: "h", DeviceID: "d1", SharedAccessKey: devKey},
		canonical: "HostName=h;DeviceId=d1;SharedAccessKey=" + devKey,
	},
}

func TestSASParseConnectionString(t *testing.T) {
	for _, tt := range connStringCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConnectionString(tt.in)
			if err != nil {
				t.Fatalf("ParseConnectionString: %v", err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			want := tt.canonical
			if want == "" {
				want = tt.in
			}
			if s := got.String(); s != want {
				t.Errorf("String() = %q, want %q", s, want)
			}
			again, err := ParseConnectionString(got.String())
			if err != nil || again != got {
				t.Errorf("round trip: got %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

func TestSASParseConnectionStringErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"only separators", ";;;"},
		{"no HostName", "DeviceId=d1;SharedAccessKey=" + devKey},
		{"empty HostName", "HostName=;DeviceId=d1;SharedAccessKey=" + devKey},
		{"lower-case hostname key", "hostname=h;DeviceId=d1;SharedAccessKey=" + devKey},
		{"no credential", "HostName=h;DeviceId=d1"},
		{"key name without key", "HostName=h;SharedAccessKeyName=iothubowner"},
		{"key and x509", "HostName=h;DeviceId=d1;SharedAccessKey=" + devKey + ";x509=true"},
		{"key and token", "HostName=h;DeviceId=d1;SharedAccessKey=" + devKey + ";SharedAccessSignature=SharedAccessSignature sr=h"},
		{"x509 not a boolean", "HostName=h;DeviceId=d1;x509=yes"},
		{"part without =", "HostName=h;DeviceId=d1;SharedAccessKey=" + devKey + ";garbage"},
		{"empty key", "HostName=h;=v;DeviceId=d1;SharedAccessKey=" + devKey},
		{"module without device", "HostName=h;ModuleId=m1;SharedAccessKey=" + devKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConnectionString(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseConnectionString(%q): got %v, want ErrMalformed", tt.in, err)
			}
			if err != nil && strings.Contains(err.Error(), devKey) {
				t.Errorf("error %q quotes the key", err)
			}
		})
	}
}

func TestSASConnectionStringRedacted(t *testing.T) {
	c := ConnectionString{HostName: "h", SharedAccessKeyName: "iothubowner", SharedAccessKey: testKey}
	want := "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=REDACTED"
	if got := c.Redacted(); got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
	c = ConnectionString{HostName: "h", DeviceID: "d", SharedAccessSignature: "SharedAccessSignature sr=h"}
	want = "HostName=h;DeviceId=d;SharedAccessSignature=REDACTED"
	if got := c.Redacted(); got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
}
