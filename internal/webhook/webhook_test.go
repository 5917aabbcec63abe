package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestPostClassifiesAnswers(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]string{200: "ok", 204: "ok", 400: "permanent", 404: "permanent", 408: "retry", 429: "retry", 500: "retry", 503: "retry"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Test") != "1" {
				w.WriteHeader(400)
				return
			}
			w.WriteHeader(status)
		}))
		err := Post(context.Background(), srv.Client(), srv.URL, []byte(`{}`), Options{Header: http.Header{"X-Test": {"1"}}})
		got := "retry"
		switch {
		case err == nil:
			got = "ok"
		case errors.Is(err, ErrPermanent):
			got = "permanent"
		}
		if got != want {
			t.Errorf("%d: %s (%v), want %s", status, got, err, want)
		}
		srv.Close()
	}
}

func TestPostTimesOutOnAHangingEndpoint(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	err := Post(context.Background(), srv.Client(), srv.URL, []byte(`{}`), Options{Timeout: 100 * time.Millisecond})
	if err == nil || errors.Is(err, ErrPermanent) || time.Since(start) > 5*time.Second {
		t.Fatalf("hanging endpoint: %v after %s", err, time.Since(start))
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 10: time.Minute} {
		if got := Backoff(n, time.Second, time.Minute); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, want)
		}
	}
	if Redact("https://x/y?code=secret") != "https://x/y?..." {
		t.Error("Redact")
	}
}
