package httpapi

import (
	"net/http"
	"strconv"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/twin"
)

// maxTwinBody is the largest twin request body read. A twin's sections are limited by IoT Hub's
// own measure (tags 8 KB, desired 32 KB), but a client may send back a whole twin it read, with
// reported properties and $metadata, which the hub ignores.
const maxTwinBody = 1 << 20

// twinRoutes serves device and module twins (spec/service-api.md 2.1). Every request writes one
// C2DTwinOperations record (operation read, update or replace) with deviceId, sdkVersion (the
// api-version, as IoT Hub writes it) and messageSize (the request body's size), and is counted
// in the c2d.twin metrics.
func (a *API) twinRoutes() {
	if a.cfg.Twins == nil {
		return
	}
	const cat = diag.C2DTwinOperations
	for _, p := range []string{"/twins/{id}", "/twins/{id}/modules/{mid}"} {
		a.route("GET "+p, auth.ServiceConnect, cat, "read", a.getTwin)
		a.route("PATCH "+p, auth.ServiceConnect, cat, "update", a.updateTwin)
		a.route("PUT "+p, auth.ServiceConnect, cat, "replace", a.updateTwin)
	}
}

// getTwin answers the twin with its etag in the ETag header.
func (a *API) getTwin(w http.ResponseWriter, r *http.Request, c *call) error {
	c.props = map[string]any{"sdkVersion": r.URL.Query().Get("api-version"), "messageSize": "0"}
	tw, err := a.cfg.Twins.Get(r.Context(), r.PathValue("id"), r.PathValue("mid"))
	n, err := a.writeTwin(w, tw, err)
	a.countTwin(false, n, err)
	return err
}

// updateTwin merges (PATCH) or replaces (PUT) tags and desired properties. If-Match takes the
// twin's etag, quoted or not, or "*"; a stale one is 412001 and changes nothing.
func (a *API) updateTwin(w http.ResponseWriter, r *http.Request, c *call) error {
	c.props = map[string]any{"sdkVersion": r.URL.Query().Get("api-version"), "messageSize": "0"}
	body, err := readBody(r, maxTwinBody)
	if err != nil {
		a.countTwin(true, 0, err)
		return err
	}
	c.props["messageSize"] = strconv.Itoa(len(body))
	var tw *twin.Twin
	if r.Method == http.MethodPut {
		tw, err = a.cfg.Twins.Replace(r.Context(), r.PathValue("id"), r.PathValue("mid"), body, r.Header.Get("If-Match"))
	} else {
		tw, err = a.cfg.Twins.Update(r.Context(), r.PathValue("id"), r.PathValue("mid"), body, r.Header.Get("If-Match"))
	}
	_, err = a.writeTwin(w, tw, err)
	a.countTwin(true, len(body), err)
	return err
}

// writeTwin writes a twin answer and returns its size.
func (a *API) writeTwin(w http.ResponseWriter, tw *twin.Twin, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	b, err := tw.MarshalJSON()
	if err != nil {
		return 0, err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("ETag", `"`+tw.ETag()+`"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return len(b), nil
}

// countTwin counts a service twin operation in c2d.twin.read.* or c2d.twin.update.*.
func (a *API) countTwin(update bool, size int, err error) {
	m := a.cfg.Metrics
	if m == nil {
		return
	}
	t := m.Twins
	switch {
	case !update && err == nil:
		t.C2DReadSuccess.Inc()
		t.C2DReadSize.Observe(float64(size))
	case !update:
		t.C2DReadFailure.Inc()
	case err == nil:
		t.C2DUpdateSuccess.Inc()
		t.C2DUpdateSize.Observe(float64(size))
	default:
		t.C2DUpdateFailure.Inc()
	}
}
