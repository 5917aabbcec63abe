package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/sas"
)

// File is an uploaded file as GET /files lists it.
type File struct {
	DeviceID      string    `json:"deviceId"`
	BlobName      string    `json:"blobName"`
	BlobURI       string    `json:"blobUri"`
	Size          int64     `json:"blobSizeInBytes"`
	LastUpdated   time.Time `json:"lastUpdatedTime"`
	ContentType   string    `json:"contentType,omitempty"`
	ETag          string    `json:"etag,omitempty"`
	Node          string    `json:"node,omitempty"`
	ContainerName string    `json:"containerName"`
}

// FileNotification is a file upload notification, as IoT Hub words it.
type FileNotification struct {
	DeviceID        string    `json:"deviceId"`
	BlobURI         string    `json:"blobUri"`
	BlobName        string    `json:"blobName"`
	LastUpdatedTime time.Time `json:"lastUpdatedTime"`
	BlobSizeInBytes int64     `json:"blobSizeInBytes"`
	EnqueuedTimeUtc time.Time `json:"enqueuedTimeUtc"`
	// LockToken completes or abandons the notification (the answer's ETag, unquoted).
	LockToken string `json:"-"`
}

// ListFiles lists the uploaded files of a device, or of every device when deviceID is "".
func (c *Client) ListFiles(ctx context.Context, deviceID string) ([]File, error) {
	q := url.Values{}
	if deviceID != "" {
		q.Set("deviceId", deviceID)
	}
	var out []File
	_, err := c.Do(ctx, http.MethodGet, "/files", q, nil, nil, &out)
	return out, err
}

// DownloadFile copies an uploaded file ({deviceId}/{name}) to w and returns its size.
func (c *Client) DownloadFile(ctx context.Context, deviceID, name string, w io.Writer) (int64, error) {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	u := c.base + "/files/" + url.PathEscape(deviceID) + "/" + strings.Join(segs, "/") + "?api-version=" + APIVersion
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	tok, err := sas.Sign(c.cs.HostName, c.cs.SharedAccessKey, c.cs.SharedAccessKeyName, time.Now().Add(time.Hour))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("User-Agent", "roost-cli")
	// Downloads may take longer than one request's timeout; ctx bounds them instead.
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return 0, ParseError(resp.StatusCode, resp.Header, data)
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("the download ended after %d of %d bytes", n, resp.ContentLength)
	}
	return n, err
}

// fileNotificationsPath is where the service side reads file upload notifications.
const fileNotificationsPath = "/messages/serviceBound/filenotifications"

// ReceiveFileNotification takes the oldest waiting file upload notification under a lock; ok
// is false when there is none.
func (c *Client) ReceiveFileNotification(ctx context.Context) (FileNotification, bool, error) {
	var raw json.RawMessage
	h, err := c.Do(ctx, http.MethodGet, fileNotificationsPath, nil, nil, nil, &raw)
	if err != nil {
		return FileNotification{}, false, err
	}
	etag := h.Get("ETag")
	if etag == "" || len(raw) == 0 {
		return FileNotification{}, false, nil
	}
	var n FileNotification
	if err := json.Unmarshal(raw, &n); err != nil {
		return FileNotification{}, false, fmt.Errorf("decode notification: %w", err)
	}
	n.LockToken = strings.Trim(etag, `"`)
	return n, true, nil
}

// CompleteFileNotification removes a received notification.
func (c *Client) CompleteFileNotification(ctx context.Context, lockToken string) error {
	_, err := c.Do(ctx, http.MethodDelete, fileNotificationsPath+"/"+url.PathEscape(lockToken), nil, nil, nil, nil)
	return err
}

// AbandonFileNotification puts a received notification back in the queue.
func (c *Client) AbandonFileNotification(ctx context.Context, lockToken string) error {
	_, err := c.Do(ctx, http.MethodPost, fileNotificationsPath+"/"+url.PathEscape(lockToken)+"/abandon", nil, nil, nil, nil)
	return err
}
