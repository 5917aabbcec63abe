package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/telemetry"
)

// Event stream formats.
const (
	contentTypeSSE    = "text/event-stream"
	contentTypeNDJSON = "application/x-ndjson"
)

// eventsHeartbeat is how often an idle event stream sends a keep-alive, so proxies keep it open
// and a vanished client is noticed.
const eventsHeartbeat = 15 * time.Second

// checkpointEvery is how often a stream with checkpoint=true stores its consumer group's
// position (and once more when it ends).
const checkpointEvery = time.Second

// telemetryRoutes serves the telemetry surface: device HTTPS telemetry, and the service's read
// side of the Event Hubs-compatible endpoint as a streaming HTTP API.
func (a *API) telemetryRoutes() {
	if a.cfg.Telemetry == nil {
		return
	}
	a.deviceTelemetryRoutes()
	const cat = diag.DeviceTelemetry
	a.route("GET /messages/events", auth.ServiceConnect, cat, "read", failuresOnly(a.streamEvents))
	a.route("GET /messages/events/consumergroups", auth.ServiceConnect, cat, "listConsumerGroups", failuresOnly(a.listConsumerGroups))
	a.route("GET /messages/events/consumergroups/{$}", auth.ServiceConnect, cat, "listConsumerGroups", failuresOnly(a.listConsumerGroups))
	a.route("GET /messages/events/consumergroups/{name}", auth.ServiceConnect, cat, "getConsumerGroup", failuresOnly(a.getConsumerGroup))
	a.route("PUT /messages/events/consumergroups/{name}", auth.ServiceConnect, cat, "createConsumerGroup", failuresOnly(a.putConsumerGroup))
	a.route("DELETE /messages/events/consumergroups/{name}", auth.ServiceConnect, cat, "deleteConsumerGroup", failuresOnly(a.deleteConsumerGroup))
	a.route("GET /messages/events/consumergroups/{name}/checkpoints", auth.ServiceConnect, cat, "getCheckpoints", failuresOnly(a.getCheckpoints))
	a.route("PUT /messages/events/consumergroups/{name}/checkpoints/{partition}", auth.ServiceConnect, cat, "setCheckpoint", failuresOnly(a.putCheckpoint))
}

// failuresOnly keeps successful calls out of the diagnostic records: DeviceTelemetry is an
// error-only category in IoT Hub.
func failuresOnly(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *call) error {
		err := h(w, r, c)
		c.noRecord = err == nil
		return err
	}
}

func (a *API) listConsumerGroups(w http.ResponseWriter, r *http.Request, _ *call) error {
	gs, err := a.cfg.Telemetry.ConsumerGroups(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, gs)
}

func (a *API) getConsumerGroup(w http.ResponseWriter, r *http.Request, _ *call) error {
	g, err := a.cfg.Telemetry.ConsumerGroup(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, g)
}

func (a *API) putConsumerGroup(w http.ResponseWriter, r *http.Request, _ *call) error {
	g, err := a.cfg.Telemetry.CreateConsumerGroup(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, g)
}

func (a *API) deleteConsumerGroup(w http.ResponseWriter, r *http.Request, _ *call) error {
	if err := a.cfg.Telemetry.DeleteConsumerGroup(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getCheckpoints lists a consumer group's checkpoints, by partition.
func (a *API) getCheckpoints(w http.ResponseWriter, r *http.Request, _ *call) error {
	cps, err := a.cfg.Telemetry.Checkpoints(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	out := make([]telemetry.Checkpoint, 0, len(cps))
	for i := 0; i < a.cfg.Telemetry.Partitions(); i++ {
		if cp, ok := cps[i]; ok {
			out = append(out, cp)
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// putCheckpoint records that a consumer group processed a partition up to a sequence number:
// body {"sequenceNumber": n}. A stream read from=checkpoint resumes after it.
func (a *API) putCheckpoint(w http.ResponseWriter, r *http.Request, _ *call) error {
	part, err := strconv.Atoi(r.PathValue("partition"))
	if err != nil {
		return errcode.Wrap(errcode.ArgumentInvalid, err, "partition '%s' is not a number", sanitize(r.PathValue("partition")))
	}
	var body struct {
		SequenceNumber *uint64 `json:"sequenceNumber"`
	}
	if err := readJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if body.SequenceNumber == nil {
		return errcode.New(errcode.ArgumentNull, "the body needs a sequenceNumber")
	}
	name := r.PathValue("name")
	if err := a.cfg.Telemetry.SetCheckpoint(r.Context(), name, part, *body.SequenceNumber); err != nil {
		return err
	}
	cps, err := a.cfg.Telemetry.Checkpoints(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, cps[part])
}

// eventsQuery reads the stream's query parameters:
//
//	consumerGroup  the group (default $Default)
//	from           start | end (default) | checkpoint | an RFC 3339 time
//	partition      one partition, or several (repeated or comma-separated); default all
//	deviceId       only this device's messages (and its modules')
//	moduleId       only this module's messages
//	checkpoint     true: store the group's position as events are delivered
func eventsQuery(r *http.Request) (telemetry.ReadOptions, bool, error) {
	q := r.URL.Query()
	opts := telemetry.ReadOptions{ConsumerGroup: q.Get("consumerGroup"), DeviceID: q.Get("deviceId"), ModuleID: q.Get("moduleId")}
	switch from := strings.TrimSpace(q.Get("from")); strings.ToLower(from) {
	case "", "end", "latest", "now":
		opts.From = telemetry.FromEnd
	case "start", "beginning", "earliest":
		opts.From = telemetry.FromStart
	case "checkpoint":
		opts.From = telemetry.FromCheckpoint
	default:
		t, err := time.Parse(time.RFC3339Nano, from)
		if err != nil {
			return opts, false, errcode.Wrap(errcode.ArgumentInvalid, err,
				"from '%s' is not start, end, checkpoint or an RFC 3339 time such as 2026-01-02T15:04:05Z", sanitize(from))
		}
		opts.From, opts.Time = telemetry.FromTime, t
	}
	for _, v := range q["partition"] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			n, err := strconv.Atoi(s)
			if err != nil {
				return opts, false, errcode.Wrap(errcode.ArgumentInvalid, err, "partition '%s' is not a number", sanitize(s))
			}
			opts.Partitions = append(opts.Partitions, n)
		}
	}
	checkpoint := false
	if v := q.Get("checkpoint"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return opts, false, errcode.Wrap(errcode.ArgumentInvalid, err, "checkpoint '%s' is not true or false", sanitize(v))
		}
		checkpoint = b
	}
	return opts, checkpoint, nil
}

// streamEvents serves device-to-cloud messages as they are read, following new ones until the
// client goes away (or the hub shuts down): server-sent events by default, one JSON object per
// line with Accept: application/x-ndjson. Each event is telemetry.AppendEventJSON's JSON.
//
// Errors found before the stream starts (bad query, unknown consumer group) answer as any REST
// error; once events flow, the stream just ends.
func (a *API) streamEvents(w http.ResponseWriter, r *http.Request, c *call) error {
	opts, checkpoint, err := eventsQuery(r)
	if err != nil {
		return err
	}
	c.deviceID, c.moduleID = opts.DeviceID, opts.ModuleID
	ctx := r.Context()
	reader, err := a.cfg.Telemetry.NewReader(ctx, opts)
	if err != nil {
		return err
	}
	defer reader.Close()

	ndjson := strings.Contains(r.Header.Get("Accept"), contentTypeNDJSON)
	rc := http.NewResponseController(w)
	h := w.Header()
	if ndjson {
		h.Set("Content-Type", contentTypeNDJSON)
	} else {
		h.Set("Content-Type", contentTypeSSE)
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	h.Set("x-roost-consumer-group", reader.ConsumerGroup())
	h.Set("x-roost-partitions", joinInts(reader.Partitions()))
	w.WriteHeader(http.StatusOK)
	// Tell the client at once that the stream is open.
	var buf []byte
	if ndjson {
		buf = append(buf, '\n')
	} else {
		buf = append(buf, ": roost telemetry stream\n\n"...)
	}
	if _, err := w.Write(buf); err != nil {
		return nil
	}
	if err := rc.Flush(); err != nil {
		return nil
	}

	var (
		positions    = map[int]uint64{} // last delivered sequence per partition, not yet checkpointed
		lastSave     = time.Now()
		saveFailures int
	)
	save := func(ctx context.Context) {
		for part, seq := range positions {
			if err := a.cfg.Telemetry.SetCheckpoint(ctx, reader.ConsumerGroup(), part, seq); err != nil {
				saveFailures++
				if saveFailures == 1 {
					a.log.Warn("event stream could not store a checkpoint", "group", reader.ConsumerGroup(), "err", err)
				}
				return
			}
			delete(positions, part)
		}
		lastSave = time.Now()
	}
	if checkpoint {
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			save(sctx)
		}()
	}

	for {
		m, err := nextWithin(ctx, reader, eventsHeartbeat)
		switch {
		case err == nil:
		case ctx.Err() != nil, errors.Is(err, telemetry.ErrClosed):
			return nil // the client left, or the hub is shutting down
		case errors.Is(err, context.DeadlineExceeded):
			if ndjson {
				buf = append(buf[:0], '\n')
			} else {
				buf = append(buf[:0], ": keep-alive\n\n"...)
			}
			if _, err := w.Write(buf); err != nil {
				return nil
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
			continue
		default:
			a.log.Warn("event stream ended by a read error", "err", err)
			return nil
		}
		buf = buf[:0]
		if !ndjson {
			buf = append(buf, "id: "...)
			buf = strconv.AppendInt(buf, int64(m.Partition), 10)
			buf = append(buf, ':')
			buf = strconv.AppendUint(buf, m.SequenceNumber, 10)
			buf = append(buf, "\ndata: "...)
		}
		buf = telemetry.AppendEventJSON(buf, m)
		buf = append(buf, '\n')
		if !ndjson {
			buf = append(buf, '\n')
		}
		if _, err := w.Write(buf); err != nil {
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
		if checkpoint {
			positions[m.Partition] = m.SequenceNumber
			if time.Since(lastSave) >= checkpointEvery {
				save(ctx)
			}
		}
	}
}

// nextWithin is reader.Next bounded by d (context.DeadlineExceeded when nothing came).
func nextWithin(ctx context.Context, reader *telemetry.Reader, d time.Duration) (*telemetry.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return reader.Next(ctx)
}

func joinInts(v []int) string {
	var b []byte
	for i, n := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(n), 10)
	}
	return string(b)
}
