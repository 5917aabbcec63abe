package httpapi_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/blob/blobtest"
	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/httpapi"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
	"github.com/roost-iot/roost/internal/telemetry"
	"github.com/roost-iot/roost/internal/twin"
	"github.com/roost-iot/roost/internal/upload"
)

const host = "hub.test"

// fixture is one hub's HTTPS API over a real engine: the registry, the access policies and
// diagnostics always, and the services its hubOptions asked for (nil otherwise).
type fixture struct {
	srv     *httptest.Server
	eng     *engine.Engine
	pols    *auth.Store
	reg     *registry.Registry
	dw      *diag.Writer
	m       *metrics.Metrics
	tel     *telemetry.Pipeline
	twins   *twin.Store
	store   *blob.Local
	uploads *upload.Service
	c2d     *c2d.Service
}

// hubOptions is what a test's hub has beyond the registry, the policies and diagnostics.
type hubOptions struct {
	eng      *engine.Engine  // nil: a fresh engine of the test's own
	registry registry.Config // the registry's settings
	tls      *tls.Config     // the listener's; nil: httptest's own certificate, no client certificates
	// api holds what the test built itself (Throttle, QuerySource, BlobIdleTimeout, ...); the
	// hub adds its own parts to it.
	api       httpapi.Config
	metrics   bool
	telemetry bool
	twins     bool
	blobHost  string // when set, the built-in blob store, under this hostName
	uploads   bool   // file uploads; needs blobHost
	c2d       bool   // cloud-to-device messaging; the registry reports its queue depths
	// wire, when set, adds services built on the hub's parts, before the server starts.
	wire func(f *fixture, api *httpapi.Config)
}

// clientCerts is the hub listener's TLS: it asks for (and does not require) client certificates.
func clientCerts() *tls.Config { return &tls.Config{ClientAuth: tls.RequestClientCert} }

func newHub(t testing.TB, o hubOptions) *fixture {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{eng: o.eng}
	if f.eng == nil {
		f.eng = enginetest.Start(t)
	}
	var err error
	f.pols, _, err = auth.Open(ctx, f.eng, auth.Config{HostName: host})
	must(err)
	rc := o.registry
	if o.c2d {
		rc.QueueDepth = func(ctx context.Context, id string) int {
			n, _ := f.c2d.Depth(ctx, id)
			return n
		}
	}
	f.reg, err = registry.New(ctx, f.eng, rc)
	must(err)
	f.dw, err = diag.NewWriter(ctx, f.eng, diag.Config{ResourceID: diag.ResourceID("0", "RG", "HUB")})
	must(err)
	api := o.api
	api.Registry, api.Policies, api.Diag = f.reg, f.pols, f.dw
	if o.metrics {
		f.m = metrics.New()
		api.Metrics = f.m
	}
	if o.telemetry {
		f.tel, err = telemetry.Open(ctx, f.eng, telemetry.Config{})
		must(err)
		t.Cleanup(f.tel.Close)
		api.Telemetry = f.tel
	}
	if o.twins {
		f.twins, err = twin.Open(ctx, f.eng, twin.Config{Registry: f.reg})
		must(err)
		api.Twins = f.twins
	}
	if o.blobHost != "" {
		var ix *blob.Index
		f.store, ix = blobtest.Open(t, f.eng, blob.LocalConfig{Host: o.blobHost, NodeID: "n1"})
		api.BlobStore = f.store
		if o.uploads {
			q, err := upload.OpenQueue(ctx, f.eng, upload.QueueConfig{})
			must(err)
			f.uploads, err = upload.Open(ctx, upload.Config{Engine: f.eng, Store: f.store, Index: ix, Queue: q, Diag: f.dw})
			must(err)
			t.Cleanup(f.uploads.Close)
			api.Uploads = f.uploads
		}
	}
	if o.c2d {
		f.c2d, err = c2d.Open(ctx, f.eng, c2d.Config{Registry: f.reg, Diag: f.dw})
		must(err)
		t.Cleanup(f.c2d.Close)
		api.C2D = f.c2d
	}
	if o.wire != nil {
		o.wire(f, &api)
	}
	f.srv = httptest.NewUnstartedServer(httpapi.New(api))
	f.srv.TLS = o.tls
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	t.Cleanup(f.dw.Close)
	if f.tel != nil {
		t.Cleanup(f.tel.CloseReaders) // before the server closes, as the hub does
	}
	return f
}

// token signs a service token for one of the hub's shared access policies.
func (f *fixture) token(t testing.TB, policy string, ttl time.Duration) string {
	t.Helper()
	p, ok, err := f.pols.Policy(context.Background(), policy)
	if err != nil || !ok {
		t.Fatalf("policy %s: %v", policy, err)
	}
	tok, err := sas.Sign(host, p.PrimaryKey, p.KeyName, time.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// deviceToken creates a device (or module, when mod is set) and signs a token with its
// primary key.
func (f *fixture) deviceToken(t testing.TB, dev, mod string) string {
	t.Helper()
	ctx := context.Background()
	var key string
	if mod == "" {
		d, err := f.reg.CreateDevice(ctx, registry.Device{DeviceID: dev})
		if err != nil {
			t.Fatal(err)
		}
		key = d.Authentication.SymmetricKey.PrimaryKey
	} else {
		m, err := f.reg.CreateModule(ctx, registry.Module{DeviceID: dev, ModuleID: mod})
		if err != nil {
			t.Fatal(err)
		}
		key = m.Authentication.SymmetricKey.PrimaryKey
	}
	return deviceSAS(t, dev, mod, key)
}

// deviceSAS signs an hour's token for a device (or module) with its key.
func deviceSAS(t testing.TB, dev, mod, key string) string {
	t.Helper()
	tok, err := sas.Sign(sas.DeviceResource(host, dev, mod), key, "", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) errorName() string {
	var eb struct{ Message string }
	_ = json.Unmarshal(a.body, &eb)
	name, _, _ := strings.Cut(strings.TrimPrefix(eb.Message, "ErrorCode:"), ";")
	return name
}

// do sends one request to the hub and reads the whole answer.
func (f *fixture) do(t testing.TB, method, path, token string, header map[string]string, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}
