package methods_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/methods/methodstest"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/registry"
)

type fixture struct {
	eng *engine.Engine
	reg *registry.Registry
	clk *methodstest.Clock
	met *metrics.Metrics
	svc *methods.Service
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{eng: enginetest.Start(t), clk: methodstest.NewClock(), met: metrics.New()}
	var err error
	if f.reg, err = registry.New(context.Background(), f.eng, registry.Config{}); err != nil {
		t.Fatal(err)
	}
	if f.svc, err = methods.New(methods.Config{Engine: f.eng, Registry: f.reg, Clock: f.clk, Metrics: f.met}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) device(t *testing.T, id string) {
	t.Helper()
	if _, err := f.reg.CreateDevice(context.Background(), registry.Device{DeviceID: id}); err != nil {
		t.Fatal(err)
	}
}

// metric returns a counter's value or a histogram's observation count.
func (f *fixture) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := f.met.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// answer makes a stand-in for a device connection: it answers every call on the identity's
// subject with reply(request).
func (f *fixture) answer(t *testing.T, dev, mod string, reply func(methods.Request) []byte) *engine.Subscription {
	t.Helper()
	sub, err := f.eng.Subscribe(methods.Subject(dev, mod), func(in engine.Inbound) {
		req, err := methods.DecodeRequest(in.Data)
		if err != nil {
			t.Errorf("decode request: %v", err)
			return
		}
		if b := reply(req); b != nil {
			_ = in.Reply(b)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Unsubscribe)
	return sub
}

// invoke runs a call in the background.
func (f *fixture) invoke(c methods.Call) <-chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := f.svc.Invoke(context.Background(), c)
		ch <- result{r, err}
	}()
	return ch
}

type result struct {
	res methods.Result
	err error
}

func wait(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not return")
		return result{}
	}
}

func wantCode(t *testing.T, err error, code errcode.Code) *errcode.Error {
	t.Helper()
	var e *errcode.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got %v, want %d", err, code)
	}
	return e
}

func TestMethodsInvokeReturnsTheDevicesAnswer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.device(t, "d1")
	var got methods.Request
	f.answer(t, "d1", "", func(r methods.Request) []byte {
		got = methods.Request{Name: r.Name, Payload: append([]byte(nil), r.Payload...), Timeout: r.Timeout}
		return methods.AppendResponse(nil, 418, []byte(` {"echo": [1, 2]} `))
	})
	res, err := f.svc.Invoke(context.Background(), methods.Call{DeviceID: "d1", MethodName: "brew", Payload: []byte(`{"k1":"v1"}`), ResponseTimeout: 45 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 418 || string(res.Payload) != ` {"echo": [1, 2]} ` {
		t.Fatalf("result %d %s: the status and payload must be the device's, byte for byte", res.Status, res.Payload)
	}
	if got.Name != "brew" || string(got.Payload) != `{"k1":"v1"}` || got.Timeout != 45*time.Second {
		t.Fatalf("request %+v", got)
	}
	if v := f.metric(t, "roost_c2d_methods_success_total"); v != 1 {
		t.Fatalf("success counter %v", v)
	}
	if n := f.metric(t, "roost_c2d_methods_request_size_bytes"); n != 1 {
		t.Fatalf("request size histogram: %v observations", n)
	}
	if n := f.metric(t, "roost_c2d_methods_response_size_bytes"); n != 1 {
		t.Fatalf("response size histogram: %v observations", n)
	}
}

func TestMethodsInvokeChecksTheAnswer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.device(t, "d2")
	bodies := map[string][]byte{
		"empty":    nil,
		"blank":    []byte(" \r\n"),
		"not json": []byte(`{'filename': 'logs.zip'}`),
		"too big":  []byte(`"` + strings.Repeat("x", methods.MaxPayload) + `"`),
	}
	f.answer(t, "d2", "", func(r methods.Request) []byte {
		return methods.AppendResponse(nil, 200, bodies[string(r.Payload[1:len(r.Payload)-1])])
	})
	for name, want := range map[string]errcode.Code{"empty": 0, "blank": 0, "not json": errcode.GenericBadGateway, "too big": errcode.GenericBadGateway} {
		res, err := f.svc.Invoke(context.Background(), methods.Call{DeviceID: "d2", MethodName: "m", Payload: []byte(`"` + name + `"`)})
		if want == 0 {
			if err != nil || res.Status != 200 || string(res.Payload) != "null" {
				t.Errorf("%s: got %d %s %v, want 200 null", name, res.Status, res.Payload, err)
			}
			continue
		}
		wantCode(t, err, want)
	}
	if v := f.metric(t, "roost_c2d_methods_failure_total"); v != 2 {
		t.Fatalf("failure counter %v, want 2", v)
	}
}

func TestMethodsInvokeUnknownDisabledAndOffline(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.device(t, "off")
	f.device(t, "disabled")
	d, _ := f.reg.GetDevice(context.Background(), "disabled")
	d.Status = registry.StatusDisabled
	if _, err := f.reg.UpdateDevice(context.Background(), d, "*"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.CreateModule(context.Background(), registry.Module{DeviceID: "off", ModuleID: "mod"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err := f.svc.Invoke(ctx, methods.Call{DeviceID: "ghost", MethodName: "m"})
	wantCode(t, err, errcode.DeviceNotFound)
	_, err = f.svc.Invoke(ctx, methods.Call{DeviceID: "disabled", MethodName: "m"})
	wantCode(t, err, errcode.DeviceNotFound)
	_, err = f.svc.Invoke(ctx, methods.Call{DeviceID: "off", ModuleID: "nomod", MethodName: "m"})
	wantCode(t, err, errcode.ModuleNotFound)
	_, err = f.svc.Invoke(ctx, methods.Call{DeviceID: "ghost", ModuleID: "mod", MethodName: "m"})
	wantCode(t, err, errcode.DeviceNotFound)
	_, err = f.svc.Invoke(ctx, methods.Call{DeviceID: "off", MethodName: "bad name"})
	wantCode(t, err, errcode.ArgumentInvalid)

	for _, c := range []methods.Call{{DeviceID: "off", MethodName: "m"}, {DeviceID: "off", ModuleID: "mod", MethodName: "m"}} {
		_, err = f.svc.Invoke(ctx, c)
		e := wantCode(t, err, errcode.DeviceNotOnline)
		var no *methods.NotOnline
		if !errors.As(err, &no) || no.ErrorInfo()["timeout"] != "00:00:00" || e.Msg != "Timed out waiting for device to connect." {
			t.Fatalf("404103 cause %v, message %q", err, e.Msg)
		}
	}
	// A connection that answers "not subscribed" counts as offline too.
	f.answer(t, "off", "", func(methods.Request) []byte {
		return methods.AppendError(nil, errcode.DeviceNotOnline, "not subscribed")
	})
	_, err = f.svc.Invoke(ctx, methods.Call{DeviceID: "off", MethodName: "m"})
	wantCode(t, err, errcode.DeviceNotOnline)
	if v := f.metric(t, "roost_c2d_methods_failure_total"); v != 8 {
		t.Fatalf("failure counter %v, want 8", v)
	}
}

func TestMethodsInvokeResponseTimeout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.device(t, "slow")
	got := make(chan struct{}, 1)
	f.answer(t, "slow", "", func(methods.Request) []byte { got <- struct{}{}; return nil }) // never answers
	ch := f.invoke(methods.Call{DeviceID: "slow", MethodName: "m", ResponseTimeout: 7 * time.Second})
	<-got
	f.clk.WaitTimers(t, 1)
	if ts := f.clk.Timers(); len(ts) != 1 || ts[0] != 7*time.Second {
		t.Fatalf("timers %v, want the 7 s response timeout", ts)
	}
	f.clk.Advance(7 * time.Second)
	r := wait(t, ch)
	e := wantCode(t, r.err, errcode.GatewayTimeout)
	var rt *methods.ResponseTimedOut
	if !errors.As(r.err, &rt) || rt.ErrorInfo()["timeout"] != "00:00:07" || e.Msg != "Timed out waiting for the response from device." {
		t.Fatalf("504101: %v", r.err)
	}
}

func TestMethodsInvokeRemoteErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.device(t, "busy")
	f.answer(t, "busy", "", func(r methods.Request) []byte {
		if r.Name == "drop" {
			return methods.AppendError(nil, errcode.GatewayTimeout, "the device disconnected before it answered")
		}
		return methods.AppendError(nil, errcode.DeviceMaximumInflightMethodExceeded, "too many")
	})
	_, err := f.svc.Invoke(context.Background(), methods.Call{DeviceID: "busy", MethodName: "m"})
	wantCode(t, err, errcode.DeviceMaximumInflightMethodExceeded)
	_, err = f.svc.Invoke(context.Background(), methods.Call{DeviceID: "busy", MethodName: "drop", ResponseTimeout: 9 * time.Second})
	wantCode(t, err, errcode.GatewayTimeout)
	var rt *methods.ResponseTimedOut
	if !errors.As(err, &rt) || rt.ResponseTimeout != 9*time.Second || !rt.Disconnected ||
		!strings.Contains(err.Error(), "connection ended before it answered") {
		t.Fatalf("cause %v", err)
	}
}

func TestMethodsInvokeWaitsForTheDeviceToConnect(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.device(t, "late")
	ch := f.invoke(methods.Call{DeviceID: "late", MethodName: "m", ConnectTimeout: 20 * time.Second})
	f.clk.WaitTimer(t, time.Second) // the retry tick: the call waits
	f.answer(t, "late", "", func(methods.Request) []byte { return methods.AppendResponse(nil, 200, []byte(`"here"`)) })
	// The device announces itself: the call goes through without waiting for the retry tick.
	if err := f.eng.PublishCore(methods.ReadySubject("late", ""), nil); err != nil {
		t.Fatal(err)
	}
	r := wait(t, ch)
	if r.err != nil || string(r.res.Payload) != `"here"` {
		t.Fatalf("got %+v", r)
	}

	// Without an announcement the retry tick finds it.
	f.device(t, "quiet")
	ch = f.invoke(methods.Call{DeviceID: "quiet", MethodName: "m", ConnectTimeout: 20 * time.Second})
	f.clk.WaitTimer(t, time.Second)
	f.answer(t, "quiet", "", func(methods.Request) []byte { return methods.AppendResponse(nil, 201, nil) })
	f.clk.Advance(time.Second)
	r = wait(t, ch)
	if r.err != nil || r.res.Status != 201 {
		t.Fatalf("got %+v", r)
	}
}

func TestMethodsInvokeConnectTimeoutExpires(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.device(t, "never")
	ch := f.invoke(methods.Call{DeviceID: "never", MethodName: "m", ConnectTimeout: 5 * time.Second})
	for i := 0; i < 5; i++ {
		f.clk.WaitTimer(t, time.Second)
		f.clk.Advance(time.Second)
	}
	r := wait(t, ch)
	wantCode(t, r.err, errcode.DeviceNotOnline)
	var no *methods.NotOnline
	if !errors.As(r.err, &no) || no.ErrorInfo()["timeout"] != "00:00:05" {
		t.Fatalf("cause %v", r.err)
	}
	// An unknown device is reported at once, not after the connect timeout.
	_, err := f.svc.Invoke(context.Background(), methods.Call{DeviceID: "nobody", MethodName: "m", ConnectTimeout: 300 * time.Second})
	wantCode(t, err, errcode.DeviceNotFound)

	// Close ends the waits of a node that shuts down.
	ch = f.invoke(methods.Call{DeviceID: "never", MethodName: "m", ConnectTimeout: 300 * time.Second})
	f.clk.WaitTimer(t, time.Second)
	f.svc.Close()
	wantCode(t, wait(t, ch).err, errcode.ServiceUnavailable)
}

func TestMethodsInvokeCallerGoesAway(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.device(t, "d")
	f.answer(t, "d", "", func(methods.Request) []byte { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { _, err := f.svc.Invoke(ctx, methods.Call{DeviceID: "d", MethodName: "m"}); ch <- err }()
	f.clk.WaitTimers(t, 1)
	cancel()
	select {
	case err := <-ch:
		wantCode(t, err, errcode.ClientClosedRequest)
	case <-time.After(10 * time.Second):
		t.Fatal("the call outlived its caller")
	}
}

// BenchmarkMethodsInvoke measures the engine leg of a call: Invoke on one node, a NATS request to
// a subscriber standing in for the device's connection, and its answer (embedded engine).
func BenchmarkMethodsInvoke(b *testing.B) {
	eng := enginetest.Start(b)
	reg, err := registry.New(context.Background(), eng, registry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := methods.New(methods.Config{Engine: eng, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	sub, err := eng.Subscribe(methods.Subject("bench", ""), func(in engine.Inbound) {
		req, _ := methods.DecodeRequest(in.Data)
		_ = in.Reply(methods.AppendResponse(nil, 200, req.Payload))
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	call := methods.Call{DeviceID: "bench", MethodName: "ping", Payload: []byte(`{"seq":12345,"note":"direct method benchmark"}`)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := svc.Invoke(context.Background(), call); err != nil {
			b.Fatal(err)
		}
	}
}
