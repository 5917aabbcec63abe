package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/roost-iot/roost/internal/sas"
)

// MethodCall is a direct method invocation, the body of POST /twins/{id}/methods.
type MethodCall struct {
	MethodName string `json:"methodName"`
	// Payload is sent as JSON; nil sends null.
	Payload json.RawMessage `json:"payload"`
	// ResponseTimeoutInSeconds is 5 to 300; zero leaves it out (the hub's default, 30).
	ResponseTimeoutInSeconds int `json:"responseTimeoutInSeconds,omitempty"`
	// ConnectTimeoutInSeconds is 0 to 300.
	ConnectTimeoutInSeconds int `json:"connectTimeoutInSeconds"`
}

// MethodResult is the device's answer.
type MethodResult struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// InvokeMethod calls a direct method on a device, or on one of its modules when moduleID is not
// empty. The request may take as long as both timeouts together, so it is not bound by the
// client's Timeout but by the call's own timeouts plus a margin (and by ctx).
func (c *Client) InvokeMethod(ctx context.Context, deviceID, moduleID string, call MethodCall) (MethodResult, error) {
	path := "/twins/" + url.PathEscape(deviceID)
	if moduleID != "" {
		path += "/modules/" + url.PathEscape(moduleID)
	}
	path += "/methods"
	if call.Payload == nil {
		call.Payload = json.RawMessage("null")
	}
	body, err := json.Marshal(call)
	if err != nil {
		return MethodResult{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path+"?api-version="+APIVersion, bytes.NewReader(body))
	if err != nil {
		return MethodResult{}, err
	}
	tok, err := sas.Sign(c.cs.HostName, c.cs.SharedAccessKey, c.cs.SharedAccessKeyName, time.Now().Add(time.Hour))
	if err != nil {
		return MethodResult{}, err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("User-Agent", "roost-cli")
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	rt := call.ResponseTimeoutInSeconds
	if rt <= 0 {
		rt = 30
	}
	hc := *c.http
	hc.Timeout = time.Duration(rt+call.ConnectTimeoutInSeconds)*time.Second + 30*time.Second
	resp, err := hc.Do(req)
	if err != nil {
		return MethodResult{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return MethodResult{}, err
	}
	if resp.StatusCode >= 300 {
		return MethodResult{}, ParseError(resp.StatusCode, resp.Header, data)
	}
	var out MethodResult
	if err := json.Unmarshal(data, &out); err != nil {
		return MethodResult{}, fmt.Errorf("decode answer: %w", err)
	}
	return out, nil
}
