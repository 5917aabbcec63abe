package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/sas"
)

// SendC2D queues a cloud-to-device message for a device and returns its message id. The
// message's properties travel as headers: iothub-messageid, iothub-correlationid, iothub-userid,
// iothub-expiry, iothub-ack, Content-Type, Content-Encoding and iothub-app-<name>.
func (c *Client) SendC2D(ctx context.Context, deviceID string, m c2d.Message) (string, error) {
	u := c.base + devicePath(deviceID) + "/messages/deviceBound?api-version=" + APIVersion
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(m.Body))
	if err != nil {
		return "", err
	}
	h := req.Header
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	set("iothub-messageid", m.MessageID)
	set("iothub-correlationid", m.CorrelationID)
	set("iothub-userid", m.UserID)
	set("iothub-ack", string(m.Ack))
	set("Content-Type", m.ContentType)
	set("Content-Encoding", m.ContentEncoding)
	if !m.Expiry.IsZero() {
		h.Set("iothub-expiry", m.Expiry.UTC().Format(time.RFC3339Nano))
	}
	for _, p := range m.Properties {
		h.Add("iothub-app-"+p.Name, p.Value)
	}
	tok, err := sas.Sign(c.cs.HostName, c.cs.SharedAccessKey, c.cs.SharedAccessKeyName, time.Now().Add(time.Hour))
	if err != nil {
		return "", err
	}
	h.Set("Authorization", tok)
	h.Set("User-Agent", "roost-cli")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return "", ParseError(resp.StatusCode, resp.Header, data)
	}
	return resp.Header.Get("iothub-messageid"), nil
}

// PurgeC2D removes every message waiting for a device and returns how many there were.
func (c *Client) PurgeC2D(ctx context.Context, deviceID string) (int, error) {
	var out struct {
		TotalMessagesPurged int `json:"totalMessagesPurged"`
	}
	_, err := c.Do(ctx, http.MethodDelete, devicePath(deviceID)+"/commands", nil, nil, nil, &out)
	return out.TotalMessagesPurged, err
}

// feedbackPath is where the service side reads cloud-to-device feedback.
const feedbackPath = "/messages/serviceBound/feedback"

// ReceiveFeedback takes the waiting feedback records (at most 64) under one lock; the lock
// token is empty when there are none.
func (c *Client) ReceiveFeedback(ctx context.Context) (string, []c2d.FeedbackRecord, error) {
	var raw json.RawMessage
	h, err := c.Do(ctx, http.MethodGet, feedbackPath, nil, nil, nil, &raw)
	if err != nil {
		return "", nil, err
	}
	etag := strings.Trim(h.Get("ETag"), `"`)
	if etag == "" || len(raw) == 0 {
		return "", nil, nil
	}
	var recs []c2d.FeedbackRecord
	if err := json.Unmarshal(raw, &recs); err != nil {
		return "", nil, fmt.Errorf("decode feedback: %w", err)
	}
	return etag, recs, nil
}

// CompleteFeedback removes a received feedback batch.
func (c *Client) CompleteFeedback(ctx context.Context, lockToken string) error {
	_, err := c.Do(ctx, http.MethodDelete, feedbackPath+"/"+url.PathEscape(lockToken), nil, nil, nil, nil)
	return err
}

// AbandonFeedback puts a received feedback batch back, to be read again.
func (c *Client) AbandonFeedback(ctx context.Context, lockToken string) error {
	_, err := c.Do(ctx, http.MethodPost, feedbackPath+"/"+url.PathEscape(lockToken)+"/abandon", nil, nil, nil, nil)
	return err
}
