package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
)

// Cloud-to-device messaging over HTTPS (spec/service-api.md §2.11, spec/device-protocol.md
// §11.2). IoT Hub's own send is AMQP; Roost also accepts it as REST, with the message's
// properties as headers mirroring what the device side returns.
//
//	service: POST   /devices/{id}/messages/deviceBound                    send (204, iothub-messageid)
//	         DELETE /devices/{id}/commands                                purge
//	         GET    /messages/serviceBound/feedback                       feedback batch (ETag) or 204
//	         DELETE /messages/serviceBound/feedback/{lockToken}           complete it
//	         POST   /messages/serviceBound/feedback/{lockToken}/abandon   abandon it
//	device:  GET    /devices/{id}/messages/deviceBound                    receive (ETag) or 204
//	         DELETE /devices/{id}/messages/deviceBound/{lockToken}[?reject]  complete or reject
//	         POST   /devices/{id}/messages/deviceBound/{lockToken}/abandon   abandon
//
// The SDKs spell the paths deviceBound or devicebound, serviceBound or servicebound; both are
// served. C2DCommands is an error-only category: only failures write records.
func (a *API) c2dRoutes() {
	if a.cfg.C2D == nil {
		return
	}
	const cat = diag.C2DCommands
	for _, p := range []string{"deviceBound", "devicebound"} {
		a.route("POST /devices/{id}/messages/"+p, auth.ServiceConnect, cat, "send", failuresOnly(a.sendC2D))
		a.deviceRoute("GET /devices/{id}/messages/"+p, cat, "receive", a.receiveC2D)
		a.deviceRoute("DELETE /devices/{id}/messages/"+p+"/{lockToken}", cat, "complete", a.settleC2D)
		a.deviceRoute("POST /devices/{id}/messages/"+p+"/{lockToken}/abandon", cat, "abandon", a.abandonC2D)
	}
	a.route("DELETE /devices/{id}/commands", auth.ServiceConnect, cat, "purge", failuresOnly(a.purgeC2D))
	for _, p := range []string{"serviceBound", "servicebound"} {
		base := "/messages/" + p + "/feedback"
		a.route("GET "+base, auth.ServiceConnect, cat, "receiveFeedback", failuresOnly(a.receiveFeedback))
		a.route("DELETE "+base+"/{lockToken}", auth.ServiceConnect, cat, "completeFeedback", failuresOnly(a.completeFeedback))
		a.route("POST "+base+"/{lockToken}/abandon", auth.ServiceConnect, cat, "abandonFeedback", failuresOnly(a.abandonFeedback))
	}
}

// sendC2D queues the request body as a message for the device in the path.
func (a *API) sendC2D(w http.ResponseWriter, r *http.Request, c *call) error {
	c.props = map[string]any{"protocol": "Https", "deliveryAcknowledgement": "None"}
	body, err := io.ReadAll(io.LimitReader(r.Body, c2d.MaxMessageSize+1))
	if err != nil {
		return errcode.Wrap(errcode.GenericBadRequest, err, "could not read the request body")
	}
	if len(body) > c2d.MaxMessageSize {
		size := len(body)
		if r.ContentLength > 0 {
			size = int(r.ContentLength)
		}
		c.props["messageSizeInBytes"] = strconv.Itoa(size)
		return errcode.New(errcode.MessageTooLarge, "the message body is over %d bytes, the limit for a cloud-to-device message", c2d.MaxMessageSize)
	}
	m, err := c2dFromHeaders(r.Header, body)
	c.props["messageId"] = m.MessageID
	c.props["messageSizeInBytes"] = strconv.Itoa(c2d.Size(&m))
	if err != nil {
		return err
	}
	if ack, err := c2d.ParseAck(string(m.Ack)); err == nil {
		c.props["deliveryAcknowledgement"] = ack.LogName()
	}
	out, err := a.cfg.C2D.Send(r.Context(), r.PathValue("id"), m)
	if err != nil {
		return err
	}
	w.Header()["iothub-messageid"] = []string{out.MessageID}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// c2dFromHeaders reads a message's properties from the send request's headers. Names match in
// any case; application property names (iothub-app-<name>) arrive lower-cased and in name
// order, since HTTP keeps neither.
func c2dFromHeaders(h http.Header, body []byte) (c2d.Message, error) {
	m := c2d.Message{Body: body}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vals := h[k]
		if len(vals) == 0 {
			continue
		}
		lk := strings.ToLower(k)
		if name, ok := strings.CutPrefix(lk, "iothub-app-"); ok {
			for _, v := range vals {
				m.Properties = append(m.Properties, c2d.Property{Name: name, Value: v})
			}
			continue
		}
		v := vals[len(vals)-1]
		switch lk {
		case "iothub-messageid":
			m.MessageID = v
		case "iothub-correlationid":
			m.CorrelationID = v
		case "iothub-userid":
			m.UserID = v
		case "iothub-ack":
			m.Ack = c2d.Ack(v)
		case "content-type", "iothub-contenttype":
			m.ContentType = v
		case "content-encoding", "iothub-contentencoding":
			m.ContentEncoding = v
		case "iothub-expiry":
			t, err := parseHeaderTime(v)
			if err != nil {
				return m, errcode.Wrap(errcode.ArgumentInvalid, err, "iothub-expiry '%s' is not a date and time (use ISO 8601 in UTC)", sanitize(v))
			}
			m.Expiry = t
		}
	}
	return m, nil
}

// receiveC2D hands the device its oldest available message under a lock. Header names are set
// in the map directly, keeping their case: the C SDK looks up ETag, iothub-messageid,
// iothub-app-* and ContentType case-sensitively (spec/device-protocol.md §11.2).
func (a *API) receiveC2D(w http.ResponseWriter, r *http.Request, c *deviceCall) error {
	d, err := a.cfg.C2D.Receive(r.Context(), c.id.DeviceID)
	if err != nil {
		return err
	}
	if d == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	h := w.Header()
	h["ETag"] = []string{`"` + d.LockToken + `"`}
	h["iothub-messageid"] = []string{d.MessageID}
	h["iothub-to"] = []string{d.To}
	h["iothub-sequencenumber"] = []string{strconv.FormatUint(d.SequenceNumber, 10)}
	h["iothub-deliverycount"] = []string{strconv.Itoa(d.DeliveryCount)}
	h["iothub-enqueuedtime"] = []string{c2d.FormatTime(d.EnqueuedTime)}
	h["iothub-expiry"] = []string{c2d.FormatTime(d.Expiry)}
	if d.CorrelationID != "" {
		h["iothub-correlationid"] = []string{d.CorrelationID}
	}
	if d.UserID != "" {
		h["iothub-userid"] = []string{d.UserID}
	}
	if d.Ack != c2d.AckNone && d.Ack != "" {
		h["iothub-ack"] = []string{string(d.Ack)}
	}
	if d.ContentType != "" {
		h["ContentType"] = []string{d.ContentType}
		h["iothub-contenttype"] = []string{d.ContentType}
	}
	if d.ContentEncoding != "" {
		h["ContentEncoding"] = []string{d.ContentEncoding}
		h["iothub-contentencoding"] = []string{d.ContentEncoding}
	}
	for _, p := range d.Properties {
		k := "iothub-app-" + p.Name
		h[k] = append(h[k], p.Value)
	}
	ct := d.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h["Content-Type"] = []string{ct}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(d.Body)
	return nil
}

// lockTokenFrom reads the lock token of the path; a quoted ETag (what the C SDK keeps) works too.
func lockTokenFrom(r *http.Request) string {
	return strings.Trim(r.PathValue("lockToken"), `"`)
}

// settleC2D completes the message, or rejects it with ?reject (the SDKs append "&reject").
func (a *API) settleC2D(w http.ResponseWriter, r *http.Request, c *deviceCall) error {
	tok := lockTokenFrom(r)
	var err error
	if r.URL.Query().Has("reject") {
		c.operation = "reject"
		err = a.cfg.C2D.Reject(r.Context(), c.id.DeviceID, tok)
	} else {
		err = a.cfg.C2D.Complete(r.Context(), c.id.DeviceID, tok)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) abandonC2D(w http.ResponseWriter, r *http.Request, c *deviceCall) error {
	if err := a.cfg.C2D.Abandon(r.Context(), c.id.DeviceID, lockTokenFrom(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// purgeResult is IoT Hub's answer to a purge.
type purgeResult struct {
	TotalMessagesPurged int     `json:"totalMessagesPurged"`
	DeviceID            string  `json:"deviceId"`
	ModuleID            *string `json:"moduleId"`
}

func (a *API) purgeC2D(w http.ResponseWriter, r *http.Request, _ *call) error {
	id := r.PathValue("id")
	n, err := a.cfg.C2D.Purge(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, purgeResult{TotalMessagesPurged: n, DeviceID: id})
}

// feedbackContentType is the content type of a feedback batch on IoT Hub.
const feedbackContentType = "application/vnd.microsoft.iothub.feedback.json"

func (a *API) receiveFeedback(w http.ResponseWriter, r *http.Request, _ *call) error {
	b, err := a.cfg.C2D.ReceiveFeedback(r.Context())
	if err != nil {
		return err
	}
	if b == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	h := w.Header()
	h["ETag"] = []string{`"` + b.LockToken + `"`}
	h["iothub-enqueuedtime"] = []string{b.EnqueuedTime.UTC().Format(time.RFC3339Nano)}
	h.Set("Content-Type", feedbackContentType+"; charset=utf-8")
	body, err := json.Marshal(b.Records)
	if err != nil {
		return errcode.Wrap(errcode.ServerError, err, "could not encode the feedback")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

func (a *API) completeFeedback(w http.ResponseWriter, r *http.Request, _ *call) error {
	if err := a.cfg.C2D.CompleteFeedback(r.Context(), lockTokenFrom(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) abandonFeedback(w http.ResponseWriter, r *http.Request, _ *call) error {
	if err := a.cfg.C2D.AbandonFeedback(r.Context(), lockTokenFrom(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
