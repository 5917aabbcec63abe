package httpapi

import (
	"net/http"

	"github.com/roost-iot/roost/internal/faults"
)

// FaultRoutes serves fault injection on the admin listener:
//
//	GET    /faults         the rules in force
//	POST   /faults         add a rule (body: faults.Rule)
//	DELETE /faults         remove every rule
//	DELETE /faults/{id}    remove one
func FaultRoutes(inj *faults.Injector) func(a *Admin) {
	return func(a *Admin) {
		a.Handle("GET /faults", false, func(w http.ResponseWriter, r *http.Request) error {
			rules, err := inj.List(r.Context())
			if err != nil {
				return err
			}
			if rules == nil {
				rules = []faults.Rule{}
			}
			WriteAdminJSON(w, http.StatusOK, rules)
			return nil
		})
		a.Handle("POST /faults", true, func(w http.ResponseWriter, r *http.Request) error {
			var rule faults.Rule
			if err := ReadAdminJSON(r, &rule); err != nil {
				return err
			}
			out, err := inj.Add(r.Context(), rule)
			if err != nil {
				return BadRequest("%v", err)
			}
			WriteAdminJSON(w, http.StatusCreated, out)
			return nil
		})
		a.Handle("DELETE /faults", true, func(w http.ResponseWriter, r *http.Request) error {
			n, err := inj.Clear(r.Context())
			if err != nil {
				return err
			}
			WriteAdminJSON(w, http.StatusOK, map[string]int{"removed": n})
			return nil
		})
		a.Handle("DELETE /faults/{id}", true, func(w http.ResponseWriter, r *http.Request) error {
			ok, err := inj.Remove(r.Context(), r.PathValue("id"))
			if err != nil {
				return err
			}
			if !ok {
				return NotFound("no fault %q", r.PathValue("id"))
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
	}
}
