// Package client is a small Go client of the hub's service REST API, used by the roost CLI and by
// tests. It signs every request with a SAS token from a service connection string, exactly as the
// Azure service SDKs do, and turns IoT Hub error bodies back into [*errcode.Error] values.
//
//	c, err := client.New(client.Config{ConnectionString: cs, CAPEM: pem})
//	dev, err := c.CreateDevice(ctx, registry.Device{DeviceID: "d1"})
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

// APIVersion is the service API version the client sends, the one the current SDKs use.
const APIVersion = "2021-04-12"

// Config says which hub to talk to and how.
type Config struct {
	// ConnectionString is a service connection string (HostName, SharedAccessKeyName, SharedAccessKey).
	ConnectionString string
	// Address overrides where to connect (host:port). Empty means HostName:443. TLS still
	// checks the certificate against HostName.
	Address string
	// CAPEM holds extra trusted CA certificates. Empty means the system roots only.
	CAPEM []byte
	// Timeout bounds each request. Zero means 30 s.
	Timeout time.Duration
}

// Client calls the service API.
type Client struct {
	cs   sas.ConnectionString
	http *http.Client
	base string
}

// New checks the configuration and builds a client.
func New(cfg Config) (*Client, error) {
	cs, err := sas.ParseConnectionString(cfg.ConnectionString)
	if err != nil {
		return nil, err
	}
	if cs.SharedAccessKeyName == "" || cs.SharedAccessKey == "" {
		return nil, errors.New("the connection string is not a service connection string (it needs SharedAccessKeyName and SharedAccessKey)")
	}
	tlsCfg := &tls.Config{ServerName: cs.HostName, MinVersion: tls.VersionTLS12}
	if len(cfg.CAPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(cfg.CAPEM) {
			return nil, errors.New("the CA file holds no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	addr := cfg.Address
	if addr == "" {
		addr = net.JoinHostPort(cs.HostName, "443")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: tlsCfg,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 64,
		ForceAttemptHTTP2:   false,
	}
	return &Client{cs: cs, http: &http.Client{Transport: tr, Timeout: timeout}, base: "https://" + cs.HostName}, nil
}

// HostName returns the hub's host name.
func (c *Client) HostName() string { return c.cs.HostName }

// Do sends one request. body, when not nil, is sent as JSON; out, when not nil, receives the
// JSON answer. An error answer becomes an [*errcode.Error].
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, header http.Header, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("api-version", APIVersion)
	req, err := http.NewRequestWithContext(ctx, method, c.base+path+"?"+q.Encode(), rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	tok, err := sas.Sign(c.cs.HostName, c.cs.SharedAccessKey, c.cs.SharedAccessKeyName, time.Now().Add(time.Hour))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("User-Agent", "roost-cli")
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 && !(resp.StatusCode == http.StatusBadRequest && out != nil && resp.Header.Get("iothub-errorcode") == errcode.BulkRegistryOperationFailure.Name()) {
		return resp.Header, ParseError(resp.StatusCode, resp.Header, data)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.Header, fmt.Errorf("decode answer: %w", err)
		}
	}
	return resp.Header, nil
}

// ParseError turns an IoT Hub error answer into an [*errcode.Error]. The code comes from the
// iothub-errorcode header or the body's "ErrorCode:<Name>;" prefix; the tracking id stays in the
// message so a user can find the matching log record.
func ParseError(status int, h http.Header, body []byte) error {
	var eb struct {
		Message          string `json:"Message"`
		ExceptionMessage string `json:"ExceptionMessage"`
	}
	_ = json.Unmarshal(body, &eb)
	name := h.Get("iothub-errorcode")
	msg := eb.Message
	if rest, ok := strings.CutPrefix(eb.Message, "ErrorCode:"); ok {
		n, m, _ := strings.Cut(rest, ";")
		if name == "" {
			name = n
		}
		msg = m
	}
	code := errcode.Code(status * 1000)
	// Direct method failures carry a JSON object in Message (spec/service-api.md 3.1, format 2).
	var inner struct {
		ErrorCode  int    `json:"errorCode"`
		TrackingID string `json:"trackingId"`
		Message    string `json:"message"`
	}
	if strings.HasPrefix(msg, "{") && json.Unmarshal([]byte(msg), &inner) == nil && inner.ErrorCode != 0 {
		code = errcode.Code(inner.ErrorCode)
		msg = inner.Message + " (Tracking ID:" + inner.TrackingID + ")"
	}
	if e, ok := errcode.Find(name); ok {
		code = e.Code
	}
	if msg == "" {
		msg = strings.TrimSpace(string(body))
	}
	if eb.ExceptionMessage != "" {
		msg += " (" + eb.ExceptionMessage + ")"
	}
	return &errcode.Error{Code: code, Msg: msg}
}

func devicePath(id string) string { return "/devices/" + url.PathEscape(id) }

// CreateDevice registers a device.
func (c *Client) CreateDevice(ctx context.Context, d registry.Device) (registry.Device, error) {
	var out registry.Device
	_, err := c.Do(ctx, http.MethodPut, devicePath(d.DeviceID), nil, nil, d, &out)
	return out, err
}

// GetDevice reads a device.
func (c *Client) GetDevice(ctx context.Context, id string) (registry.Device, error) {
	var out registry.Device
	_, err := c.Do(ctx, http.MethodGet, devicePath(id), nil, nil, nil, &out)
	return out, err
}

// UpdateDevice replaces a device; etag "" means unconditionally ("*").
func (c *Client) UpdateDevice(ctx context.Context, d registry.Device, etag string) (registry.Device, error) {
	if etag == "" {
		etag = "*"
	}
	var out registry.Device
	_, err := c.Do(ctx, http.MethodPut, devicePath(d.DeviceID), nil, http.Header{"If-Match": {`"` + etag + `"`}}, d, &out)
	return out, err
}

// DeleteDevice removes a device; etag "" means unconditionally.
func (c *Client) DeleteDevice(ctx context.Context, id, etag string) error {
	if etag == "" {
		etag = "*"
	}
	_, err := c.Do(ctx, http.MethodDelete, devicePath(id), nil, http.Header{"If-Match": {`"` + etag + `"`}}, nil, nil)
	return err
}

// ListDevices lists up to top devices (0 means the hub's maximum, 1000).
func (c *Client) ListDevices(ctx context.Context, top int) ([]registry.Device, error) {
	q := url.Values{}
	if top > 0 {
		q.Set("top", strconv.Itoa(top))
	}
	var out []registry.Device
	_, err := c.Do(ctx, http.MethodGet, "/devices/", q, nil, nil, &out)
	return out, err
}

// Statistics counts devices.
func (c *Client) Statistics(ctx context.Context) (registry.Stats, error) {
	var out registry.Stats
	_, err := c.Do(ctx, http.MethodGet, "/statistics/devices", nil, nil, nil, &out)
	return out, err
}
