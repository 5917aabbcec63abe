// Package certs provides the hub's TLS material: a local CA and a server certificate made on
// first start and kept in the data dir, or the operator's own certificate.
//
// The Azure SDKs connect only over TLS and check the server certificate against the hub's host
// name, so a hub on a laptop needs a certificate its clients can be told to trust. On first
// start [Load] makes an ECDSA P-256 CA and a server certificate signed by it; the user trusts
// the CA once (NODE_EXTRA_CA_CERTS, an SDK's ca option, the system store). Later starts reuse
// the CA and re-issue only the server certificate when a host name is added or it nears
// expiry, so that trust survives:
//
//	m, err := certs.Load(certs.Options{Dir: filepath.Join(dataDir, "tls"), Hostnames: []string{"myhub.local"}})
//	if err != nil {
//		return err
//	}
//	if m.Generated {
//		logger.Info("made TLS certificate", "ca", m.CAFile)
//	}
//	ln, err := tls.Listen("tcp", ":8883", m.Config)
//
// With Options.CertFile and Options.KeyFile set, Load uses those and generates nothing.
//
// Load is not safe to run concurrently on one Dir from several processes.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // SHA-1 thumbprints are what IoT Hub's registry stores
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside Options.Dir.
const (
	CAFileName         = "ca.crt"
	CAKeyFileName      = "ca.key"
	ServerCertFileName = "server.crt"
	ServerKeyFileName  = "server.key"
)

// Lifetimes of generated certificates.
const (
	// CAValidity is the lifetime of a generated CA.
	CAValidity = 10 * 365 * 24 * time.Hour
	// ServerValidity is the lifetime of a generated server certificate. Apple platforms
	// reject TLS server certificates valid for more than 825 days even under a private CA;
	// one day less leaves room for the backdated start.
	ServerValidity = 824 * 24 * time.Hour
	// RenewBefore is how long before its expiry a server certificate is re-issued.
	RenewBefore = 30 * 24 * time.Hour
	// backdate is how far NotBefore is set in the past, for clients whose clock is behind.
	backdate = time.Hour
)

// defaultHostnames are always in a generated server certificate.
var defaultHostnames = []string{"localhost", "127.0.0.1", "::1"}

// Options says where the TLS material lives. The zero value is not usable: set Dir, or
// CertFile and KeyFile.
type Options struct {
	// Dir holds the generated files ca.crt, ca.key, server.crt and server.key (keys mode
	// 0600). It is created (mode 0700) if missing. Unused when CertFile is set.
	Dir string
	// Hostnames are DNS names and IP addresses for the server certificate's SANs, besides
	// localhost, 127.0.0.1 and ::1, which are always there. Brackets around IPv6
	// addresses are allowed. Unused when CertFile is set.
	Hostnames []string
	// CertFile and KeyFile are the operator's PEM server certificate (chain) and key. When
	// set, Load uses them and generates nothing. Set both or neither.
	CertFile, KeyFile string
}

// Material is what a TLS listener needs.
type Material struct {
	// Config is the server configuration: TLS 1.2 to 1.3, the server certificate, and
	// ClientAuth tls.RequestClientCert, so devices may present an X.509 certificate that the
	// hub checks against registry thumbprints (see [Thumbprint]); chains are not verified
	// here. NextProtos is empty; a listener that needs ALPN sets it on a Clone.
	Config *tls.Config
	// CAFile is the path of the CA certificate (PEM) for clients to trust; "" when the
	// operator supplied the certificate.
	CAFile string
	// CAPEM is the content of CAFile; nil when the operator supplied the certificate.
	CAPEM []byte
	// Generated reports whether this call wrote a new CA or server certificate.
	Generated bool
}

// Load returns the TLS material described by opts.
//
// With CertFile and KeyFile set it loads those. Otherwise it reads the CA from Dir, making one
// if there is none (an ECDSA P-256 CA valid for [CAValidity], CN "Roost Local CA <random>"),
// and reads the server certificate, issuing a new one from the CA (ECDSA P-256, valid for
// [ServerValidity], ExtKeyUsageServerAuth, SANs from Hostnames plus localhost, 127.0.0.1 and
// ::1) when it is missing, unreadable, not issued by the CA, lacks a requested name, or
// expires within [RenewBefore]. Files are written atomically.
//
// Load fails rather than replace a CA whose key is missing or does not match, since a new CA
// would silently break the trust every client was given. An expired CA is replaced.
func Load(opts Options) (*Material, error) {
	if opts.CertFile != "" || opts.KeyFile != "" {
		return loadOperator(opts)
	}
	if opts.Dir == "" {
		return nil, errors.New("certs: no directory and no certificate file given")
	}
	names, ips, err := sans(opts.Hostnames)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	now := time.Now()
	m := &Material{CAFile: filepath.Join(opts.Dir, CAFileName)}

	ca, caKey, caPEM, err := loadCA(opts.Dir)
	if err == nil && !now.Before(ca.NotAfter) {
		// Clients already reject everything it signed: nothing is lost by replacing it.
		err = fs.ErrNotExist
	}
	if errors.Is(err, fs.ErrNotExist) {
		ca, caKey, caPEM, err = newCA(opts.Dir, now)
		m.Generated = true
	}
	if err != nil {
		return nil, err
	}
	m.CAPEM = caPEM

	leaf, err := loadServer(opts.Dir, ca, names, ips, now)
	if err != nil {
		if leaf, err = newServer(opts.Dir, ca, caKey, names, ips, now); err != nil {
			return nil, err
		}
		m.Generated = true
	}
	m.Config = serverConfig(leaf)
	return m, nil
}

func loadOperator(opts Options) (*Material, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("certs: set both the certificate and the key file, or neither")
	}
	cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: load %s and %s: %w", opts.CertFile, opts.KeyFile, err)
	}
	return &Material{Config: serverConfig(cert)}, nil
}

func serverConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
	}
}

// sans splits hostnames, plus the defaults, into lower-cased DNS names and IPs, without
// duplicates, in order.
func sans(hostnames []string) ([]string, []net.IP, error) {
	var names []string
	var ips []net.IP
	for _, h := range slices.Concat(hostnames, defaultHostnames) {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if strings.ContainsAny(h, " /:[]") || strings.Trim(h, ".") == "" {
			return nil, nil, fmt.Errorf("certs: %q is not a host name or IP address", h)
		}
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	return names, ips, nil
}

// loadCA reads the CA and its key. It returns an error wrapping fs.ErrNotExist only when the
// CA certificate does not exist, in which case a new CA may be made.
func loadCA(dir string) (*x509.Certificate, crypto.Signer, []byte, error) {
	certPath := filepath.Join(dir, CAFileName)
	keyPath := filepath.Join(dir, CAKeyFileName)
	caPEM, err := os.ReadFile(certPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// A key without its certificate was never handed to a client: replace it.
			return nil, nil, nil, err
		}
		return nil, nil, nil, fmt.Errorf("certs: %w", err)
	}
	ca, err := parseCert(caPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		// %v, not %w: this must not look like fs.ErrNotExist to Load, which would replace the CA.
		return nil, nil, nil, fmt.Errorf("certs: the CA certificate %s has no key (%v); restore %s, or delete %s to make a new CA that clients must trust again",
			certPath, err, keyPath, certPath)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %s: %w", keyPath, err)
	}
	if !publicKeyEqual(ca.PublicKey, key.Public()) {
		return nil, nil, nil, fmt.Errorf("certs: %s does not belong to %s; restore the right key, or delete both to make a new CA that clients must trust again",
			keyPath, certPath)
	}
	if !ca.IsCA {
		return nil, nil, nil, fmt.Errorf("certs: %s is not a CA certificate", certPath)
	}
	return ca, key, caPEM, nil
}

func newCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "Roost Local CA " + hex.EncodeToString(suffix[:]),
			Organization: []string{"Roost"},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: create CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certs: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a key without a certificate is replaced on the next start (see loadCA).
	if err := writeFileAtomic(filepath.Join(dir, CAKeyFileName), keyPEM, 0o600); err != nil {
		return nil, nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, CAFileName), caPEM, 0o644); err != nil {
		return nil, nil, nil, err
	}
	return ca, key, caPEM, nil
}

// loadServer reads the server certificate and key, and returns an error if they are missing
// or unusable, or should be re-issued.
func loadServer(dir string, ca *x509.Certificate, names []string, ips []net.IP, now time.Time) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFileName), filepath.Join(dir, ServerKeyFileName))
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, err
		}
		cert.Leaf = leaf
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return tls.Certificate{}, fmt.Errorf("not issued by the CA: %w", err)
	}
	if now.Add(RenewBefore).After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return tls.Certificate{}, errors.New("expires soon or not yet valid")
	}
	for _, n := range names {
		if !slices.ContainsFunc(leaf.DNSNames, func(d string) bool { return strings.EqualFold(d, n) }) {
			return tls.Certificate{}, fmt.Errorf("lacks %s", n)
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return tls.Certificate{}, fmt.Errorf("lacks %s", ip)
		}
	}
	return cert, nil
}

func newServer(dir string, ca *x509.Certificate, caKey crypto.Signer, names []string, ips []net.IP, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	cn := "localhost"
	if len(names) > 0 {
		cn = names[0]
	}
	notAfter := now.Add(ServerValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Roost"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: issue server certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(filepath.Join(dir, ServerKeyFileName), keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(filepath.Join(dir, ServerCertFileName), certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: %w", err)
	}
	return cert, nil
}

// Thumbprint returns the SHA-1 and SHA-256 fingerprints of cert's DER encoding as upper-case
// hex without separators, the form IoT Hub shows for X.509 device thumbprints (compare
// case-insensitively: clients may register lower-case ones). It returns "", "" for nil.
func Thumbprint(cert *x509.Certificate) (sha1hex, sha256hex string) {
	if cert == nil {
		return "", ""
	}
	s1 := sha1.Sum(cert.Raw) //nolint:gosec // a fingerprint, not a signature
	s256 := sha256.Sum256(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(s1[:])), strings.ToUpper(hex.EncodeToString(s256[:]))
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // positive, as RFC 5280 requires
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", key)
	}
	return signer, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// writeFileAtomic writes data to a temporary file in path's directory and renames it over
// path, so a reader sees the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	// Make the rename durable; not every platform can sync a directory.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
