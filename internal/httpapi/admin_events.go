package httpapi

import (
	"net/http"
	"time"

	"github.com/roost-iot/roost/internal/events"
)

// EventRoutes serves device event subscriptions on the admin listener:
//
//	GET    /events/subscriptions          the subscriptions
//	PUT    /events/subscriptions/{name}   add or replace one (body: events.Subscription)
//	GET    /events/subscriptions/{name}   one
//	DELETE /events/subscriptions/{name}   remove one
//	GET    /events/deadletters            dead-lettered events (?subscription=, ?since=)
func EventRoutes(m *events.Manager) func(a *Admin) {
	return func(a *Admin) {
		a.Handle("GET /events/subscriptions", false, func(w http.ResponseWriter, r *http.Request) error {
			subs, err := m.List(r.Context())
			if err != nil {
				return err
			}
			WriteAdminJSON(w, http.StatusOK, nonNil(subs))
			return nil
		})
		a.Handle("PUT /events/subscriptions/{name}", true, func(w http.ResponseWriter, r *http.Request) error {
			var s events.Subscription
			if err := ReadAdminJSON(r, &s); err != nil {
				return err
			}
			if s.Name == "" {
				s.Name = r.PathValue("name")
			}
			if s.Name != r.PathValue("name") {
				return BadRequest("the subscription's name %q differs from the path's %q", s.Name, r.PathValue("name"))
			}
			out, err := m.Put(r.Context(), s)
			if err != nil {
				return BadRequest("%v", err)
			}
			WriteAdminJSON(w, http.StatusOK, out)
			return nil
		})
		a.Handle("GET /events/subscriptions/{name}", false, func(w http.ResponseWriter, r *http.Request) error {
			s, ok, err := m.Get(r.Context(), r.PathValue("name"))
			if err != nil {
				return err
			}
			if !ok {
				return NotFound("no event subscription %q", r.PathValue("name"))
			}
			WriteAdminJSON(w, http.StatusOK, s)
			return nil
		})
		a.Handle("DELETE /events/subscriptions/{name}", true, func(w http.ResponseWriter, r *http.Request) error {
			ok, err := m.Delete(r.Context(), r.PathValue("name"))
			if err != nil {
				return err
			}
			if !ok {
				return NotFound("no event subscription %q", r.PathValue("name"))
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
		a.Handle("GET /events/deadletters", false, func(w http.ResponseWriter, r *http.Request) error {
			since, err := parseSince(r.URL.Query().Get("since"), 7*24*time.Hour)
			if err != nil {
				return err
			}
			dl, err := m.DeadLetters(r.Context(), r.URL.Query().Get("subscription"), since)
			if err != nil {
				return err
			}
			WriteAdminJSON(w, http.StatusOK, nonNil(dl))
			return nil
		})
	}
}
