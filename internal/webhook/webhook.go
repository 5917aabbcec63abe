// Package webhook delivers JSON payloads to HTTP endpoints for alerts and device events: one
// attempt at a time with a deadline, and a back-off schedule for the retries the callers run.
// A slow or failing endpoint costs its caller's goroutine and nothing else; the hub's request
// paths never wait on a webhook.
//
//	err := webhook.Post(ctx, client, url, body, webhook.Options{Timeout: 10 * time.Second})
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Options shape one delivery.
type Options struct {
	// Timeout bounds the attempt. Zero means 10 s.
	Timeout time.Duration
	// ContentType of the body. Empty means application/json.
	ContentType string
	// Header adds headers.
	Header http.Header
}

// ErrPermanent wraps a failure retrying cannot fix (the endpoint answered 400, 404, 413...).
var ErrPermanent = errors.New("permanent failure")

// Post sends body to url once. Any 2xx answer is success; 408, 429 and 5xx answers and
// network errors may be retried; other 4xx answers are wrapped in [ErrPermanent].
func Post(ctx context.Context, client *http.Client, url string, body []byte, o Options) error {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.ContentType == "" {
		o.ContentType = "application/json"
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPermanent, err)
	}
	for k, v := range o.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", o.ContentType)
	req.Header.Set("User-Agent", "roost-webhook")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("the endpoint answered %s", resp.Status)
	}
	return fmt.Errorf("%w: the endpoint answered %s", ErrPermanent, resp.Status)
}

// Backoff is the wait before retry n (1 for the first retry): base doubling each time, at most
// limit.
func Backoff(n int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Redact hides a URL's query (which often holds a key) for logs.
func Redact(url string) string {
	if i := strings.IndexByte(url, '?'); i >= 0 {
		return url[:i] + "?..."
	}
	return url
}
