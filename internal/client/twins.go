package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

func twinPath(deviceID, moduleID string) string {
	p := "/twins/" + url.PathEscape(deviceID)
	if moduleID != "" {
		p += "/modules/" + url.PathEscape(moduleID)
	}
	return p
}

// GetTwin reads the twin of a device, or of one of its modules when moduleID is not empty, as
// the hub's JSON.
func (c *Client) GetTwin(ctx context.Context, deviceID, moduleID string) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := c.Do(ctx, http.MethodGet, twinPath(deviceID, moduleID), nil, nil, nil, &out)
	return out, err
}

// UpdateTwin changes a twin's tags and desired properties: patch is {"tags":{...},
// "properties":{"desired":{...}}}. With replace the twin's tags and desired properties become
// exactly the patch's (PUT); otherwise they are merged into it, a null deleting (PATCH). etag,
// when not empty, makes the change conditional on the twin's current etag. It returns the
// updated twin.
func (c *Client) UpdateTwin(ctx context.Context, deviceID, moduleID string, patch json.RawMessage, etag string, replace bool) (json.RawMessage, error) {
	method := http.MethodPatch
	if replace {
		method = http.MethodPut
	}
	var hdr http.Header
	if etag != "" {
		hdr = http.Header{"If-Match": {`"` + etag + `"`}}
	}
	var out json.RawMessage
	_, err := c.Do(ctx, method, twinPath(deviceID, moduleID), nil, hdr, patch, &out)
	return out, err
}
