package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/sas"
)

// BenchmarkHTTPMethodRoundTrip measures a direct method's round trip as a service sees it: an
// HTTPS POST /twins/{id}/methods, through the engine to the node holding the device, over MQTT
// (TLS) to a real MQTT client that answers at once, and back. Calls start at a steady 1,000 per
// second (each on its own, as independent callers would), and the benchmark reports the
// latency percentiles and the share of calls that failed. Everything (HTTPS client and server,
// engine, MQTT server and device) shares the machine's cores, so run it on an idle machine:
//
//	go test -run '^$' -bench HTTPMethodRoundTrip -benchtime 10000x ./internal/httpapi/
//
// The sub-benchmark "two-nodes" puts the device on another node than the API, both on a
// standalone nats-server, so each call crosses the engine twice more.
func BenchmarkHTTPMethodRoundTrip(b *testing.B) {
	b.Run("one-node", func(b *testing.B) {
		n := newMethodNode(b, enginetest.Start(b), "n1", nil)
		n.connect(b, "bench-dev", echo)
		benchMethodRoundTrip(b, n)
	})
	b.Run("two-nodes", func(b *testing.B) {
		ext := enginetest.StartExternal(b)
		api := newMethodNode(b, ext.Connect(b), "api", nil)
		dev := newMethodNode(b, ext.Connect(b), "dev", nil)
		dev.connect(b, "bench-dev", echo)
		benchMethodRoundTrip(b, api)
	})
}

func benchMethodRoundTrip(b *testing.B, n *methodNode) {
	p, _, err := n.pols.Policy(context.Background(), "service")
	if err != nil {
		b.Fatal(err)
	}
	tok, err := sas.Sign(host, p.PrimaryKey, p.KeyName, time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	hc := n.srv.Client()
	// A service keeps a pool of connections; 64 of them carry 1,000 calls/s with room to spare.
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	hc.Transport.(*http.Transport).MaxConnsPerHost = 64
	url := n.srv.URL + "/twins/bench-dev/methods" + v
	const body = `{"methodName":"ping","payload":{"seq":12345,"note":"direct method benchmark"},"responseTimeoutInSeconds":30}`
	call := func() error {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", tok)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(out), `{"status":200,`) {
			return &httpError{resp.StatusCode, string(out)}
		}
		return nil
	}
	for i := 0; i < 200; i++ { // warm up connections and caches
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	const rate = 1000 // calls per second
	lat := make([]time.Duration, b.N)
	var failed atomic.Int64
	firstErr := make(chan error, 1)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t0 := time.Now()
			if err := call(); err != nil {
				failed.Add(1)
				select {
				case firstErr <- err:
				default:
				}
			}
			lat[i] = time.Since(t0)
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	select {
	case err := <-firstErr:
		// An overloaded machine shows up as 403800 (the device has 100 calls in flight) or
		// timeouts; report it rather than hide the latency numbers.
		b.Logf("%d of %d calls failed; first: %v", failed.Load(), b.N, err)
	default:
	}
	slices.Sort(lat)
	pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(pct(1), "max_ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(100*float64(failed.Load())/float64(b.N), "%error")
}

type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return http.StatusText(e.status) + ": " + e.body }
