package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/roost-iot/roost/internal/sas"
	"github.com/roost-iot/roost/internal/telemetry"
)

// EventsQuery selects the device-to-cloud messages [Client.StreamEvents] reads.
type EventsQuery struct {
	// ConsumerGroup is the group read for (and checkpointed); empty means $Default.
	ConsumerGroup string
	// From is "start", "end" (the default: only new messages), "checkpoint", or an RFC 3339 time.
	From string
	// Partitions restricts the read to these partitions; empty means all.
	Partitions []int
	// DeviceID and ModuleID keep only that device's (or module's) messages.
	DeviceID, ModuleID string
	// Checkpoint makes the hub store the group's position as it delivers messages.
	Checkpoint bool
}

// maxEventLine bounds one event of the stream: a 256 KB body in base64 plus its properties.
const maxEventLine = 4 << 20

// StreamEvents reads the hub's device-to-cloud messages (GET /messages/events, JSON lines) and
// calls fn with each as it arrives, until ctx ends or fn returns [ErrStop] (it then returns nil),
// fn returns another error (returned as is), or the hub ends the stream (io.ErrUnexpectedEOF). An error answer to the
// request itself is an [*errcode.Error].
func (c *Client) StreamEvents(ctx context.Context, q EventsQuery, fn func(*telemetry.Message) error) error {
	v := url.Values{"api-version": {APIVersion}}
	if q.ConsumerGroup != "" {
		v.Set("consumerGroup", q.ConsumerGroup)
	}
	if q.From != "" {
		v.Set("from", q.From)
	}
	for _, p := range q.Partitions {
		v.Add("partition", strconv.Itoa(p))
	}
	if q.DeviceID != "" {
		v.Set("deviceId", q.DeviceID)
	}
	if q.ModuleID != "" {
		v.Set("moduleId", q.ModuleID)
	}
	if q.Checkpoint {
		v.Set("checkpoint", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/messages/events?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	tok, err := sas.Sign(c.cs.HostName, c.cs.SharedAccessKey, c.cs.SharedAccessKeyName, time.Now().Add(time.Hour))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", tok)
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("User-Agent", "roost-cli")
	// The stream lasts as long as the caller wants: no overall timeout, same connections.
	stream := &http.Client{Transport: c.http.Transport}
	resp, err := stream.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return ParseError(resp.StatusCode, resp.Header, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue // keep-alive
		}
		m, err := telemetry.ParseEventJSON(line)
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// ConsumerGroups lists the built-in endpoint's consumer groups.
func (c *Client) ConsumerGroups(ctx context.Context) ([]telemetry.ConsumerGroup, error) {
	var out []telemetry.ConsumerGroup
	_, err := c.Do(ctx, http.MethodGet, "/messages/events/consumergroups", nil, nil, nil, &out)
	return out, err
}

// CreateConsumerGroup adds a consumer group.
func (c *Client) CreateConsumerGroup(ctx context.Context, name string) (telemetry.ConsumerGroup, error) {
	var out telemetry.ConsumerGroup
	_, err := c.Do(ctx, http.MethodPut, "/messages/events/consumergroups/"+url.PathEscape(name), nil, nil, nil, &out)
	return out, err
}

// DeleteConsumerGroup removes a consumer group and its checkpoints.
func (c *Client) DeleteConsumerGroup(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, "/messages/events/consumergroups/"+url.PathEscape(name), nil, nil, nil, nil)
	return err
}

// ErrStop, returned by a [Client.StreamEvents] callback, ends the stream; StreamEvents then
// returns nil.
var ErrStop = errors.New("stop")
