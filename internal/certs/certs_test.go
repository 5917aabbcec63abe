package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func load(tb testing.TB, opts Options) *Material {
	tb.Helper()
	m, err := Load(opts)
	if err != nil {
		tb.Fatalf("Load(%+v): %v", opts, err)
	}
	return m
}

func leafOf(tb testing.TB, m *Material) *x509.Certificate {
	tb.Helper()
	if len(m.Config.Certificates) != 1 {
		tb.Fatalf("got %d certificates, want 1", len(m.Config.Certificates))
	}
	c := m.Config.Certificates[0]
	if c.Leaf != nil {
		return c.Leaf
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		tb.Fatal(err)
	}
	return leaf
}

func TestCertsGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	m := load(t, Options{Dir: dir, Hostnames: []string{"MyHub.Local", "10.1.2.3", "[fd00::1]", "localhost"}})

	if !m.Generated {
		t.Error("Generated = false on first call")
	}
	if want := filepath.Join(dir, CAFileName); m.CAFile != want {
		t.Errorf("CAFile = %q, want %q", m.CAFile, want)
	}
	onDisk, err := os.ReadFile(m.CAFile)
	if err != nil || !bytes.Equal(onDisk, m.CAPEM) {
		t.Errorf("CAPEM differs from %s (%v)", m.CAFile, err)
	}
	for name, perm := range map[string]os.FileMode{CAFileName: 0o644, CAKeyFileName: 0o600, ServerCertFileName: 0o644, ServerKeyFileName: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != perm {
			t.Errorf("%s mode %v, want %v", name, got, perm)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("dir holds %d entries, want 4 (no temporary files left)", len(entries))
	}

	cfg := m.Config
	if cfg.MinVersion != tls.VersionTLS12 || cfg.MaxVersion != tls.VersionTLS13 {
		t.Errorf("versions %x..%x, want TLS 1.2..1.3", cfg.MinVersion, cfg.MaxVersion)
	}
	if cfg.ClientAuth != tls.RequestClientCert {
		t.Errorf("ClientAuth = %v, want RequestClientCert", cfg.ClientAuth)
	}
	if len(cfg.NextProtos) != 0 {
		t.Errorf("NextProtos = %v, want none", cfg.NextProtos)
	}

	ca, err := parseCert(m.CAPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || !strings.HasPrefix(ca.Subject.CommonName, "Roost Local CA ") || len(ca.Subject.CommonName) <= len("Roost Local CA ") {
		t.Errorf("CA: IsCA %v, CN %q", ca.IsCA, ca.Subject.CommonName)
	}
	if d := ca.NotAfter.Sub(ca.NotBefore); d < 9*365*24*time.Hour {
		t.Errorf("CA valid for %v, want about 10 years", d)
	}

	leaf := leafOf(t, m)
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("server key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 825*24*time.Hour {
		t.Errorf("server certificate valid for %v, want at most 825 days", d)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("ExtKeyUsage = %v, want ServerAuth", leaf.ExtKeyUsage)
	}
	if want := []string{"myhub.local", "localhost"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, want)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"10.1.2.3", "fd00::1", "127.0.0.1", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("IPAddresses = %v, want %v", ips, want)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, name := range []string{"myhub.local", "localhost", "127.0.0.1", "::1", "10.1.2.3"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
}

func TestCertsReload(t *testing.T) {
	dir := t.TempDir()
	first := load(t, Options{Dir: dir, Hostnames: []string{"myhub.local"}})
	second := load(t, Options{Dir: dir, Hostnames: []string{"MYHUB.local."}})
	if second.Generated {
		t.Error("Generated = true on a reload with the same names")
	}
	if !bytes.Equal(first.CAPEM, second.CAPEM) {
		t.Error("CA changed on reload")
	}
	s1, _ := Thumbprint(leafOf(t, first))
	s2, _ := Thumbprint(leafOf(t, second))
	if s1 != s2 {
		t.Error("server certificate changed on reload")
	}
	// A name the certificate already has, and none at all, need nothing new either.
	if m := load(t, Options{Dir: dir, Hostnames: []string{"localhost"}}); m.Generated {
		t.Error("Generated = true for a subset of the names")
	}
	if m := load(t, Options{Dir: dir}); m.Generated {
		t.Error("Generated = true with no names")
	}
}

func TestCertsAddHostname(t *testing.T) {
	dir := t.TempDir()
	first := load(t, Options{Dir: dir, Hostnames: []string{"myhub.local"}})
	second := load(t, Options{Dir: dir, Hostnames: []string{"myhub.local", "node2.local", "192.168.1.9"}})
	if !second.Generated {
		t.Error("Generated = false after adding names")
	}
	if !bytes.Equal(first.CAPEM, second.CAPEM) {
		t.Error("CA changed when a name was added")
	}
	leaf := leafOf(t, second)
	if !slices.Contains(leaf.DNSNames, "node2.local") || !slices.ContainsFunc(leaf.IPAddresses, net.ParseIP("192.168.1.9").Equal) {
		t.Errorf("re-issued certificate lacks the new names: %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	ca, _ := parseCert(second.CAPEM)
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Errorf("re-issued certificate not signed by the same CA: %v", err)
	}
	if third := load(t, Options{Dir: dir, Hostnames: []string{"node2.local", "myhub.local", "192.168.1.9"}}); third.Generated {
		t.Error("Generated = true on the third call with the same names")
	}
}

// issue writes a server certificate for localhost valid until notAfter, signed by the CA in
// dir or, with foreign set, by a new CA of its own.
func issue(tb testing.TB, dir string, notAfter time.Time, foreign bool) {
	tb.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFileName))
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := parseCert(caPEM)
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFileName))
	if err != nil {
		tb.Fatal(err)
	}
	caKey, err := parseKey(keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	if foreign {
		other := tb.TempDir()
		load(tb, Options{Dir: other})
		issue(tb, other, notAfter, false)
		for _, f := range []string{ServerCertFileName, ServerKeyFileName} {
			b, err := os.ReadFile(filepath.Join(other, f))
			if err != nil {
				tb.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
				tb.Fatal(err)
			}
		}
		return
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	kp, err := encodeKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ServerKeyFileName), kp, 0o600); err != nil {
		tb.Fatal(err)
	}
	cp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, ServerCertFileName), cp, 0o644); err != nil {
		tb.Fatal(err)
	}
}

func TestCertsReissue(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(tb testing.TB, dir string)
		want    bool // re-issued
	}{
		{"valid for 60 days", func(tb testing.TB, dir string) { issue(tb, dir, time.Now().Add(60*24*time.Hour), false) }, false},
		{"expires in 10 days", func(tb testing.TB, dir string) { issue(tb, dir, time.Now().Add(10*24*time.Hour), false) }, true},
		{"expired", func(tb testing.TB, dir string) { issue(tb, dir, time.Now().Add(-time.Minute), false) }, true},
		{"signed by another CA", func(tb testing.TB, dir string) { issue(tb, dir, time.Now().Add(60*24*time.Hour), true) }, true},
		{"server key missing", func(tb testing.TB, dir string) { os.Remove(filepath.Join(dir, ServerKeyFileName)) }, true},
		{"server certificate garbage", func(tb testing.TB, dir string) {
			os.WriteFile(filepath.Join(dir, ServerCertFileName), []byte("junk"), 0o644)
		}, true},
		{"server key of another certificate", func(tb testing.TB, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, CAKeyFileName))
			os.WriteFile(filepath.Join(dir, ServerKeyFileName), b, 0o600)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := load(t, Options{Dir: dir})
			tt.prepare(t, dir)
			m := load(t, Options{Dir: dir})
			if m.Generated != tt.want {
				t.Errorf("Generated = %v, want %v", m.Generated, tt.want)
			}
			if !bytes.Equal(first.CAPEM, m.CAPEM) {
				t.Error("CA changed")
			}
			leaf := leafOf(t, m)
			ca, _ := parseCert(m.CAPEM)
			if err := leaf.CheckSignatureFrom(ca); err != nil {
				t.Errorf("server certificate not from the CA: %v", err)
			}
			if time.Until(leaf.NotAfter) < RenewBefore {
				t.Errorf("server certificate expires at %v", leaf.NotAfter)
			}
		})
	}
}

func TestCertsCAProblems(t *testing.T) {
	t.Run("CA key missing is an error", func(t *testing.T) {
		dir := t.TempDir()
		load(t, Options{Dir: dir})
		os.Remove(filepath.Join(dir, CAKeyFileName))
		if _, err := Load(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "has no key") {
			t.Errorf("got %v, want an error about the missing key", err)
		}
	})
	t.Run("CA key of another CA is an error", func(t *testing.T) {
		dir, other := t.TempDir(), t.TempDir()
		load(t, Options{Dir: dir})
		load(t, Options{Dir: other})
		b, _ := os.ReadFile(filepath.Join(other, CAKeyFileName))
		os.WriteFile(filepath.Join(dir, CAKeyFileName), b, 0o600)
		if _, err := Load(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "does not belong") {
			t.Errorf("got %v, want an error about the wrong key", err)
		}
	})
	t.Run("CA certificate missing makes a new CA", func(t *testing.T) {
		dir := t.TempDir()
		first := load(t, Options{Dir: dir})
		os.Remove(filepath.Join(dir, CAFileName))
		m := load(t, Options{Dir: dir})
		if !m.Generated || bytes.Equal(first.CAPEM, m.CAPEM) {
			t.Errorf("Generated = %v, CA changed = %v; want a new CA", m.Generated, !bytes.Equal(first.CAPEM, m.CAPEM))
		}
		ca, _ := parseCert(m.CAPEM)
		if err := leafOf(t, m).CheckSignatureFrom(ca); err != nil {
			t.Errorf("server certificate not from the new CA: %v", err)
		}
	})
	t.Run("CA certificate garbage is an error", func(t *testing.T) {
		dir := t.TempDir()
		load(t, Options{Dir: dir})
		os.WriteFile(filepath.Join(dir, CAFileName), []byte("junk"), 0o644)
		if _, err := Load(Options{Dir: dir}); err == nil {
			t.Error("got nil error")
		}
	})
}

func TestCertsOptionErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		opts Options
	}{
		{"nothing", Options{}},
		{"cert without key", Options{CertFile: filepath.Join(dir, "x.crt")}},
		{"key without cert", Options{KeyFile: filepath.Join(dir, "x.key")}},
		{"missing files", Options{CertFile: filepath.Join(dir, "x.crt"), KeyFile: filepath.Join(dir, "x.key")}},
		{"bad hostname", Options{Dir: dir, Hostnames: []string{"my hub"}}},
		{"host:port", Options{Dir: dir, Hostnames: []string{"myhub:8883"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Load(tt.opts); err == nil {
				t.Error("got nil error")
			}
		})
	}
}

func TestCertsOperatorFiles(t *testing.T) {
	src := t.TempDir()
	gen := load(t, Options{Dir: src, Hostnames: []string{"op.example"}})
	unused := filepath.Join(t.TempDir(), "unused")
	m := load(t, Options{
		Dir:       unused,
		Hostnames: []string{"not-in-the-cert.example"},
		CertFile:  filepath.Join(src, ServerCertFileName),
		KeyFile:   filepath.Join(src, ServerKeyFileName),
	})
	if m.Generated || m.CAFile != "" || m.CAPEM != nil {
		t.Errorf("Generated %v, CAFile %q, CAPEM %d bytes; want false, empty, nil", m.Generated, m.CAFile, len(m.CAPEM))
	}
	if _, err := os.Stat(unused); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Dir was touched: %v", err)
	}
	if m.Config.MinVersion != tls.VersionTLS12 || m.Config.ClientAuth != tls.RequestClientCert {
		t.Errorf("operator config differs from the generated one")
	}
	_, client := handshake(t, m.Config, gen.CAPEM, "tcp4", "op.example", tls.VersionTLS13, nil)
	if got := client.PeerCertificates[0].Subject.CommonName; got != "op.example" {
		t.Errorf("served certificate CN %q, want op.example", got)
	}
}

// handshake serves one TLS connection with cfg on loopback and dials it as a client that
// trusts caPEM and speaks only version. It returns the server's and the client's view of the
// connection.
func handshake(tb testing.TB, cfg *tls.Config, caPEM []byte, network, serverName string, version uint16, clientCert *tls.Certificate) (server, client tls.ConnectionState) {
	tb.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		if network == "tcp6" {
			tb.Skipf("no IPv6 loopback: %v", err)
		}
		tb.Fatal(err)
	}
	defer ln.Close()

	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		sc := tls.Server(c, cfg)
		if err := sc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		// Read until the client closes, so its handshake and close complete.
		_, _ = io.Copy(io.Discard, sc)
		done <- result{state: sc.ConnectionState()}
	}()

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		tb.Fatal("CA PEM holds no certificate")
	}
	ccfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: version, MaxVersion: version}
	if clientCert != nil {
		ccfg.Certificates = []tls.Certificate{*clientCert}
	}
	cc, err := tls.Dial(network, ln.Addr().String(), ccfg)
	if err != nil {
		ln.Close()
		<-done
		tb.Fatalf("dial %s as %s: %v", network, serverName, err)
	}
	client = cc.ConnectionState()
	if client.Version != version {
		tb.Errorf("negotiated %x, want %x", client.Version, version)
	}
	cc.Close()
	r := <-done
	if r.err != nil {
		tb.Fatalf("server handshake: %v", r.err)
	}
	return r.state, client
}

func TestCertsHandshake(t *testing.T) {
	m := load(t, Options{Dir: t.TempDir(), Hostnames: []string{"myhub.local"}})
	tests := []struct {
		network, serverName string
	}{
		{"tcp4", "localhost"},
		{"tcp4", "127.0.0.1"},
		{"tcp4", "myhub.local"},
		{"tcp6", "::1"},
	}
	for _, tt := range tests {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tls.VersionName(v)+"/"+tt.serverName, func(t *testing.T) {
				state, _ := handshake(t, m.Config, m.CAPEM, tt.network, tt.serverName, v, nil)
				if state.Version != v {
					t.Errorf("server negotiated %x, want %x", state.Version, v)
				}
				if len(state.PeerCertificates) != 0 {
					t.Errorf("client sent %d certificates, want none", len(state.PeerCertificates))
				}
			})
		}
	}
}

// TestCertsClientCertificate checks that a self-signed device certificate is accepted without
// chain verification and reaches the hub for its thumbprint check.
func TestCertsClientCertificate(t *testing.T) {
	m := load(t, Options{Dir: t.TempDir()})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "device1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	devCert, _ := x509.ParseCertificate(der)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			state, _ := handshake(t, m.Config, m.CAPEM, "tcp4", "localhost", v, &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
			if len(state.PeerCertificates) != 1 {
				t.Fatalf("server saw %d client certificates, want 1", len(state.PeerCertificates))
			}
			got1, got256 := Thumbprint(state.PeerCertificates[0])
			want1, want256 := Thumbprint(devCert)
			if got1 != want1 || got256 != want256 {
				t.Errorf("thumbprints %s %s, want %s %s", got1, got256, want1, want256)
			}
		})
	}
}

// deviceCertPEM and its fingerprints were made with
//
//	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=device1 -days 3650
//	openssl x509 -noout -fingerprint -sha1    (and -sha256)
const deviceCertPEM = `-----BEGIN CERTIFICATE-----
MIIBeTCCAR+gAwIBAgIUPR/T+2C6EsbuK2cTedXxjR51DmYwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHZGV2aWNlMTAeFw0yNjExMjUyMzQ3NTVaFw0zNjExMjIyMzQ3
NTVaMBIxEDAOBgNVBAMMB2RldmljZTEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AATvMUSB8zwnRH5M+0DSfhN+OW+VOWPT8Bs/eEJ7lG9NE/LrWYjNXDCaikyh6wts
OGnGniPfVein0MG9yyqodRiFo1MwUTAdBgNVHQ4EFgQUCm+9xnBNB04pH6xC1i7X
8oDradwwHwYDVR0jBBgwFoAUCm+9xnBNB04pH6xC1i7X8oDradwwDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEA0pWvOCSFJ4N1Ptl0b0lELUnxFXsO
bDplYu5Rylv06sACIASS+NviU9PwoQNgqRmN4VWKeZp3+wJB+o6CbxO/E3CX
-----END CERTIFICATE-----
`

func TestCertsThumbprint(t *testing.T) {
	cert, err := parseCert([]byte(deviceCertPEM))
	if err != nil {
		t.Fatal(err)
	}
	s1, s256 := Thumbprint(cert)
	want1 := strings.ReplaceAll("41:2B:AE:6A:01:F2:2E:3C:5C:57:42:BF:F7:BC:33:79:02:14:FF:12", ":", "")
	want256 := strings.ReplaceAll("85:00:95:59:E7:72:A5:8B:31:68:BC:58:5F:75:C0:D7:88:C7:85:F6:AF:90:02:D2:8B:E8:33:1E:14:2A:E0:9F", ":", "")
	if s1 != want1 || s256 != want256 {
		t.Errorf("Thumbprint = %s, %s; want %s, %s", s1, s256, want1, want256)
	}
	if a, b := Thumbprint(nil); a != "" || b != "" {
		t.Errorf("Thumbprint(nil) = %q, %q; want empty", a, b)
	}
}

func TestCertsExpiredCAReplaced(t *testing.T) {
	dir := t.TempDir()
	if _, _, _, err := newCA(dir, time.Now().Add(-CAValidity-time.Hour)); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(filepath.Join(dir, CAFileName))
	m := load(t, Options{Dir: dir})
	if !m.Generated || bytes.Equal(old, m.CAPEM) {
		t.Errorf("Generated = %v, CA replaced = %v; want a new CA", m.Generated, !bytes.Equal(old, m.CAPEM))
	}
}
