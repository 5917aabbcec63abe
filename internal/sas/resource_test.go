package sas

import (
	"encoding/base64"
	"testing"
)

var coversCases = []struct {
	name, token, target string
	want                bool
}{
	{"same device", "h/devices/a", "h/devices/a", true},
	{"module of the device", "h/devices/a", "h/devices/a/modules/m", true},
	{"segment prefix only", "h/devices/a", "h/devices/ab", false},
	{"shorter target", "h/devices/a/modules/m", "h/devices/a", false},
	{"hub-wide token covers a device", "h", "h/devices/a", true},
	{"devices token covers every device", "h/devices", "h/devices/a/modules/m", true},
	{"other hub", "h", "h2/devices/a", false},
	{"host case-insensitive", "MyHub.Azure-Devices.NET", "myhub.azure-devices.net/devices/a", true},
	{"device id case-insensitive", "h/devices/Dev1", "h/devices/dev1", true},
	{"trailing slash on token", "h/devices/a/", "h/devices/a", true},
	{"trailing slash on target", "h/devices/a", "h/devices/a/", true},
	{"raw encoded token resource", "h%2Fdevices%2Fa", "h/devices/a", true},
	{"lower-case escapes", "h%2fdevices%2fa", "h/devices/a/modules/m", true},
	{"node single-encoded id", "h/devices/a#b", DeviceResource("h", "a#b", ""), true},
	{"c# double-encoded id", "h/devices/a%2523b", DeviceResource("h", "a#b", ""), true},
	{"encoded slash in id stays in its segment", "h/devices/a", DeviceResource("h", "a%2Fb", ""), false},
	{"encoded slash in id matches itself", "h/devices/a%252Fb", DeviceResource("h", "a%2Fb", ""), true},
	{"empty token resource", "", "h/devices/a", false},
	{"slash token resource", "/", "h/devices/a", false},
	{"empty target", "h", "", false},
	{"bad escape compared literally", "h/devices/a%zz", "h/devices/a%zz", true},
	{"bad escape differs", "h/devices/a%zz", "h/devices/a%zy", false},
}

func TestSASResourceCovers(t *testing.T) {
	for _, tt := range coversCases {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResourceCovers(tt.token, tt.target); got != tt.want {
				t.Errorf("ResourceCovers(%q, %q) = %v, want %v", tt.token, tt.target, got, tt.want)
			}
		})
	}
}

func TestSASDeviceResource(t *testing.T) {
	tests := []struct {
		host, device, module, want string
	}{
		{"h", "dev1", "", "h/devices/dev1"},
		{"h", "dev1", "m1", "h/devices/dev1/modules/m1"},
		{"h", "a b#c%/d", "", "h/devices/a%20b%23c%25%2Fd"},
		{"h", "keep-_.!~*'()", "", "h/devices/keep-_.!~*'()"},
		{"h", "d", "$edgeAgent", "h/devices/d/modules/%24edgeAgent"},
		{"h", "é", "", "h/devices/%C3%A9"},
	}
	for _, tt := range tests {
		if got := DeviceResource(tt.host, tt.device, tt.module); got != tt.want {
			t.Errorf("DeviceResource(%q, %q, %q) = %q, want %q", tt.host, tt.device, tt.module, got, tt.want)
		}
	}
}

func TestSASGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 44 || !ValidKey(a) {
		t.Errorf("GenerateKey() = %q: want 44 characters of valid base64", a)
	}
	if a == b {
		t.Errorf("two keys are equal: %q", a)
	}
}

func TestSASValidKey(t *testing.T) {
	enc := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name, key string
		want      bool
	}{
		{"32 bytes", testKey, true},
		{"16 bytes", enc(16), true},
		{"36 bytes as the Node e2e tests use", enc(36), true},
		{"64 bytes", enc(64), true},
		{"15 bytes", enc(15), false},
		{"65 bytes", enc(65), false},
		{"empty", "", false},
		{"unpadded", testKey[:43], false},
		{"url alphabet", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh_-", false},
		{"line break", testKey[:20] + "\n" + testKey[20:], false},
		{"not base64", "this is not a key at all, not even close!!!=", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidKey(tt.key); got != tt.want {
				t.Errorf("ValidKey(%q) = %v, want %v", tt.key, got, tt.want)
			}
		})
	}
}

func BenchmarkResourceCovers(b *testing.B) {
	tok := "myhub.azure-devices.net/devices/device1"
	target := DeviceResource("MyHub.azure-devices.net", "device1", "module1")
	b.ReportAllocs()
	for b.Loop() {
		if !ResourceCovers(tok, target) {
			b.Fatal("not covered")
		}
	}
}
