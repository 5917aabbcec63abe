package httpapi

import (
	"net/http"
	"time"

	"github.com/roost-iot/roost/internal/alerts"
)

// AlertRoutes serves alert rules on the admin listener:
//
//	GET    /alerts               every rule's state
//	GET    /alerts/rules         the rules
//	PUT    /alerts/rules/{name}  add or replace a rule (body: alerts.Rule)
//	GET    /alerts/rules/{name}  one rule
//	DELETE /alerts/rules/{name}  remove a rule
//	GET    /alerts/history       Fired and Resolved notifications (?since=RFC 3339 or duration)
func AlertRoutes(m *alerts.Manager) func(a *Admin) {
	return func(a *Admin) {
		a.Handle("GET /alerts", false, func(w http.ResponseWriter, r *http.Request) error {
			st, err := m.States(r.Context())
			if err != nil {
				return err
			}
			WriteAdminJSON(w, http.StatusOK, nonNil(st))
			return nil
		})
		a.Handle("GET /alerts/rules", false, func(w http.ResponseWriter, r *http.Request) error {
			rules, err := m.List(r.Context())
			if err != nil {
				return err
			}
			WriteAdminJSON(w, http.StatusOK, nonNil(rules))
			return nil
		})
		a.Handle("PUT /alerts/rules/{name}", true, func(w http.ResponseWriter, r *http.Request) error {
			var rule alerts.Rule
			if err := ReadAdminJSON(r, &rule); err != nil {
				return err
			}
			if rule.Name == "" {
				rule.Name = r.PathValue("name")
			}
			if rule.Name != r.PathValue("name") {
				return BadRequest("the rule's name %q differs from the path's %q", rule.Name, r.PathValue("name"))
			}
			out, err := m.Put(r.Context(), rule)
			if err != nil {
				return BadRequest("%v", err)
			}
			WriteAdminJSON(w, http.StatusOK, out)
			return nil
		})
		a.Handle("GET /alerts/rules/{name}", false, func(w http.ResponseWriter, r *http.Request) error {
			rule, ok, err := m.Get(r.Context(), r.PathValue("name"))
			if err != nil {
				return err
			}
			if !ok {
				return NotFound("no alert rule %q", r.PathValue("name"))
			}
			WriteAdminJSON(w, http.StatusOK, rule)
			return nil
		})
		a.Handle("DELETE /alerts/rules/{name}", true, func(w http.ResponseWriter, r *http.Request) error {
			ok, err := m.Delete(r.Context(), r.PathValue("name"))
			if err != nil {
				return err
			}
			if !ok {
				return NotFound("no alert rule %q", r.PathValue("name"))
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
		a.Handle("GET /alerts/history", false, func(w http.ResponseWriter, r *http.Request) error {
			since, err := parseSince(r.URL.Query().Get("since"), 24*time.Hour)
			if err != nil {
				return err
			}
			h, err := m.History(r.Context(), since)
			if err != nil {
				return err
			}
			WriteAdminJSON(w, http.StatusOK, nonNil(h))
			return nil
		})
	}
}

// parseSince reads ?since= as RFC 3339 or a duration back from now; empty means def back.
func parseSince(s string, def time.Duration) (time.Time, error) {
	if s == "" {
		return time.Now().Add(-def), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, BadRequest("since %q is neither an RFC 3339 time nor a duration such as 24h", s)
	}
	return time.Now().Add(-d), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
