package client

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
)

// Item types of query results (the x-ms-item-type header).
const (
	ItemTwin      = "twin"
	ItemRaw       = "raw"
	ItemDeviceJob = "deviceJob"
)

// QueryPage is one page of a query's results.
type QueryPage struct {
	// Items are the results, each a JSON value (a twin, or a row of a projection).
	Items []json.RawMessage
	// ItemType is the x-ms-item-type header: twin, raw or deviceJob.
	ItemType string
	// Continuation is the token for the next page; empty on the last page.
	Continuation string
}

// Query runs a query (POST /devices/query) and returns one page: the first when continuation
// is empty, else the one after the page that gave the token. pageSize 0 lets the hub choose.
func (c *Client) Query(ctx context.Context, query string, pageSize int, continuation string) (QueryPage, error) {
	h := http.Header{}
	if pageSize > 0 {
		h.Set("x-ms-max-item-count", strconv.Itoa(pageSize))
	}
	if continuation != "" {
		h.Set("x-ms-continuation", continuation)
	}
	var items []json.RawMessage
	rh, err := c.Do(ctx, http.MethodPost, "/devices/query", nil, h, map[string]string{"query": query}, &items)
	if err != nil {
		return QueryPage{}, err
	}
	if items == nil {
		items = []json.RawMessage{}
	}
	return QueryPage{Items: items, ItemType: rh.Get("x-ms-item-type"), Continuation: rh.Get("x-ms-continuation")}, nil
}
