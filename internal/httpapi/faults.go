package httpapi

import "net/http"

// injectFault returns the failure fault injection asks for on this request's operation, or nil.
// The request then fails, is answered and logged exactly as a real failure, and its record is
// marked with the rule.
func (a *API) injectFault(r *http.Request, c *call) error {
	if a.cfg.Faults == nil {
		return nil
	}
	if e := a.cfg.Faults.Check(r.Context(), c.category, c.operation, c.deviceID); e != nil {
		return e
	}
	return nil
}
