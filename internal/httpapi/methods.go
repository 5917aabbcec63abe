package httpapi

import (
	"io"
	"net/http"
	"strconv"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
)

// methodRoutes serves direct method calls (spec/service-api.md 2.7). Each call writes one
// DirectMethods record, operation "send", with deviceId, RequestSize, ResponseSize and
// sdkVersion (the api-version, as IoT Hub writes it).
func (a *API) methodRoutes() {
	if a.cfg.Methods == nil {
		return
	}
	a.route("POST /twins/{id}/methods", auth.ServiceConnect, diag.DirectMethods, "send", a.invokeMethod)
	a.route("POST /twins/{id}/modules/{mid}/methods", auth.ServiceConnect, diag.DirectMethods, "send", a.invokeMethod)
}

// invokeMethod answers 200 {"status":<device status>,"payload":<device JSON>} whatever status
// the device gave, with the payload byte for byte as the device sent it.
func (a *API) invokeMethod(w http.ResponseWriter, r *http.Request, c *call) error {
	c.props = map[string]any{"RequestSize": 0, "ResponseSize": 0, "sdkVersion": r.URL.Query().Get("api-version")}
	res, size, err := a.cfg.Methods.InvokeJSON(r.Context(), r.PathValue("id"), r.PathValue("mid"), r.Body)
	c.props["RequestSize"] = size
	if err != nil {
		return err
	}
	c.props["ResponseSize"] = len(res.Payload)
	out := make([]byte, 0, 32+len(res.Payload))
	out = append(out, `{"status":`...)
	out = strconv.AppendInt(out, int64(res.Status), 10)
	out = append(out, `,"payload":`...)
	out = append(out, res.Payload...)
	out = append(out, '}')
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	return nil
}

// readBody reads a request body of at most limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, errcode.Wrap(errcode.GenericBadRequest, err, "could not read the request body")
	}
	if int64(len(b)) > limit {
		return nil, errcode.New(errcode.GenericRequestEntityTooLarge, "the request body is larger than %d bytes", limit)
	}
	return b, nil
}
