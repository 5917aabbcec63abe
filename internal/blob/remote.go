package blob

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// apiVersion is the Blob service version Roost speaks to an external account and answers with.
const apiVersion = "2020-10-02"

// RemoteConfig configures an external account.
type RemoteConfig struct {
	Account   Account
	Container string
	// Index receives an entry for every upload a device reports as done, so `roost files list`
	// shows external uploads too.
	Index *Index
	// RootCAs, when set, are trusted in addition to the system roots (e.g. the hub's own CA for
	// an Azurite whose certificate it issued).
	RootCAs *x509.CertPool
	// Timeout bounds each call to the account. Zero means 30 s.
	Timeout time.Duration
	// Now returns the current time. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Remote hands out SAS URIs for blobs in an external Azure Storage account (or Azurite) and
// reads them back. The device uploads straight to the account; Roost only signs.
//
// It is the one place outside the edges that makes HTTP requests: the account is storage, as
// the engine is, and this is its client.
type Remote struct {
	cfg  RemoteConfig
	http *http.Client
	log  *slog.Logger
}

// NewRemote builds the client of an external account.
func NewRemote(cfg RemoteConfig) *Remote {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.RootCAs != nil {
		tlsCfg.RootCAs = cfg.RootCAs
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &Remote{cfg: cfg, http: &http.Client{Transport: tr}, log: log.With("component", "blob-remote")}
}

// Container returns the container uploads go to.
func (r *Remote) Container() string { return r.cfg.Container }

// Grant returns a SAS that lets a device create and write one blob until expiry.
func (r *Remote) Grant(name string, expiry time.Time) Grant {
	a := r.cfg.Account
	s := BlobSAS(a.Name, a.Key, r.cfg.Container, name, "cw", expiry)
	return Grant{HostName: a.HostName(), Container: r.cfg.Container, SASToken: "?" + s.Encode()}
}

// URI is the blob's URL in the account.
func (r *Remote) URI(name string) string { return r.cfg.Account.BlobURL(r.cfg.Container, name) }

func (r *Remote) readURL(name string) string {
	a := r.cfg.Account
	s := BlobSAS(a.Name, a.Key, r.cfg.Container, name, "r", r.cfg.Now().Add(15*time.Minute))
	return r.URI(name) + "?" + s.Encode()
}

func (r *Remote) do(ctx context.Context, method, u string, hdr http.Header) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("x-ms-version", apiVersion)
	resp, err := r.http.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// Confirm reads an uploaded blob's properties from the account (Get Blob Properties) and
// records the blob in the index.
func (r *Remote) Confirm(ctx context.Context, name string) (Props, error) {
	resp, err := r.do(ctx, http.MethodHead, r.readURL(name), nil)
	if err != nil {
		return Props{}, Fail(http.StatusServiceUnavailable, CodeServerBusy, "The storage account could not be reached: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return Props{}, Fail(http.StatusNotFound, CodeBlobNotFound, "The specified blob does not exist in the storage account.")
	}
	if resp.StatusCode != http.StatusOK {
		return Props{}, Fail(http.StatusServiceUnavailable, CodeServerBusy, "The storage account answered %s (%s).", resp.Status, resp.Header.Get("x-ms-error-code"))
	}
	p := r.propsFrom(name, resp)
	if r.cfg.Index != nil {
		if err := r.cfg.Index.Set(ctx, p); err != nil {
			r.log.Warn("could not record an external upload in the index", "blob", name, "err", err)
		}
	}
	return p, nil
}

func (r *Remote) propsFrom(name string, resp *http.Response) Props {
	h := resp.Header
	p := Props{Container: r.cfg.Container, Name: name, ETag: strings.Trim(h.Get("ETag"), `"`), ContentType: h.Get("Content-Type"),
		ContentEncoding: h.Get("Content-Encoding"), URI: r.URI(name)}
	p.Size, _ = strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if rng := h.Get("Content-Range"); rng != "" { // bytes 0-0/<size>
		if _, total, ok := strings.Cut(rng, "/"); ok {
			p.Size, _ = strconv.ParseInt(total, 10, 64)
		}
	}
	p.Modified, _ = http.ParseTime(h.Get("Last-Modified"))
	p.Created, _ = http.ParseTime(h.Get("x-ms-creation-time"))
	if md := h.Get("Content-MD5"); md != "" {
		p.ContentMD5, _ = base64.StdEncoding.DecodeString(md)
	}
	return p
}

// OpenReader streams a blob from the account (Get Blob).
func (r *Remote) OpenReader(ctx context.Context, name string) (io.ReadCloser, Props, error) {
	resp, err := r.do(ctx, http.MethodGet, r.readURL(name), nil)
	if err != nil {
		return nil, Props{}, Fail(http.StatusServiceUnavailable, CodeServerBusy, "The storage account could not be reached: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, Props{}, Fail(http.StatusNotFound, CodeBlobNotFound, "The specified blob does not exist in the storage account.")
		}
		return nil, Props{}, Fail(http.StatusServiceUnavailable, CodeServerBusy, "The storage account answered %s.", resp.Status)
	}
	return resp.Body, r.propsFrom(name, resp), nil
}

// EnsureContainer creates the upload container in the account if it does not exist, signing
// with the account key (Shared Key), as the Blob service's own tools do.
func (r *Remote) EnsureContainer(ctx context.Context) error {
	u := r.cfg.Account.Endpoint.String() + "/" + r.cfg.Container + "?restype=container"
	hdr := http.Header{}
	hdr.Set("x-ms-date", r.cfg.Now().UTC().Format(http.TimeFormat))
	hdr.Set("x-ms-version", apiVersion)
	hdr.Set("Content-Length", "0")
	hdr.Set("Authorization", r.sharedKey(http.MethodPut, u, hdr))
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, http.NoBody)
	if err != nil {
		return err
	}
	req.Header = hdr
	req.ContentLength = 0
	resp, err := r.http.Do(req)
	if err != nil {
		return fmt.Errorf("storage account %s: %w", r.cfg.Account.Endpoint, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusCreated:
		r.log.Info("created the upload container", "container", r.cfg.Container)
		return nil
	case resp.StatusCode == http.StatusConflict: // ContainerAlreadyExists
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("storage account %s: create container %s: %s %s", r.cfg.Account.Endpoint, r.cfg.Container, resp.Status, body)
}

// sharedKey signs a request with the account key (Shared Key authorization, version
// 2009-09-19 and later) for the few calls that a SAS cannot make.
func (r *Remote) sharedKey(method, rawURL string, hdr http.Header) string {
	u, _ := url.Parse(rawURL)
	var ms []string
	for k := range hdr {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-ms-") {
			ms = append(ms, lk)
		}
	}
	sort.Strings(ms)
	var sb strings.Builder
	cl := hdr.Get("Content-Length")
	if cl == "0" {
		cl = ""
	}
	for _, v := range []string{method, hdr.Get("Content-Encoding"), hdr.Get("Content-Language"), cl, hdr.Get("Content-MD5"),
		hdr.Get("Content-Type"), "", hdr.Get("If-Modified-Since"), hdr.Get("If-Match"), hdr.Get("If-None-Match"),
		hdr.Get("If-Unmodified-Since"), hdr.Get("Range")} {
		sb.WriteString(v)
		sb.WriteByte('\n')
	}
	for _, k := range ms {
		sb.WriteString(k + ":" + strings.TrimSpace(hdr.Get(k)) + "\n")
	}
	sb.WriteString("/" + r.cfg.Account.Name + u.EscapedPath())
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vals := append([]string(nil), q[k]...)
		sort.Strings(vals)
		sb.WriteString("\n" + strings.ToLower(k) + ":" + strings.Join(vals, ","))
	}
	return "SharedKey " + r.cfg.Account.Name + ":" + Sign(r.cfg.Account.Key, sb.String())
}
