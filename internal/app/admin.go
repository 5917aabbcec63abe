package app

import (
	"encoding/json"
	"net/http"

	"github.com/roost-iot/roost/internal/errcode"
)

// errorJSON is the admin API's view of a catalog entry.
type errorJSON struct {
	Code       int    `json:"code"`
	Name       string `json:"name"`
	GuideName  string `json:"guideName,omitempty"`
	HTTPStatus int    `json:"httpStatus"`
	Summary    string `json:"summary"`
	Symptom    string `json:"symptom,omitempty"`
	Cause      string `json:"cause,omitempty"`
	Resolution string `json:"resolution,omitempty"`
}

// conditionJSON is the admin API's view of a condition without a code (e.g. MessageExpired).
type conditionJSON struct {
	Name       string `json:"name"`
	Symptom    string `json:"symptom"`
	Cause      string `json:"cause"`
	Resolution string `json:"resolution"`
	Where      string `json:"where"`
}

func toConditionJSON(c errcode.Condition) conditionJSON {
	return conditionJSON{Name: c.Name, Symptom: c.Symptom, Cause: c.Cause, Resolution: c.Resolution, Where: c.Where}
}

func toErrorJSON(e errcode.Entry) errorJSON {
	return errorJSON{Code: int(e.Code), Name: e.Name, GuideName: e.GuideName, HTTPStatus: e.Status(),
		Summary: e.Summary, Symptom: e.Symptom, Cause: e.Cause, Resolution: e.Resolution}
}

func (h *Hub) adminHandler() http.Handler {
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /healthz", h.trouble.healthz)
	h.trouble.mount(mux)
	mux.Handle("GET /metrics", h.Metrics.Handler())
	mux.HandleFunc("GET /throttle", h.serveThrottleStatus)
	mux.HandleFunc("GET /errors", func(w http.ResponseWriter, r *http.Request) {
		all := errcode.All()
		out := make([]errorJSON, 0, len(all))
		for _, e := range all {
			out = append(out, toErrorJSON(e))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /errors/{code}", func(w http.ResponseWriter, r *http.Request) {
		e, ok := errcode.Find(r.PathValue("code"))
		if !ok {
			if cond, ok := errcode.FindCondition(r.PathValue("code")); ok {
				writeJSON(w, http.StatusOK, toConditionJSON(cond))
				return
			}
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such error code or name: " + r.PathValue("code")})
			return
		}
		writeJSON(w, http.StatusOK, toErrorJSON(e))
	})
	return mux
}
