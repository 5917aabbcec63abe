package httpapi

import (
	"net/http"
	"strconv"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
)

func (a *API) routes() {
	const cat = diag.DeviceIdentityOperations
	a.route("PUT /devices/{id}", auth.RegistryWrite, cat, "create", a.putDevice)
	a.route("GET /devices/{id}", auth.RegistryRead, cat, "get", a.getDevice)
	a.route("DELETE /devices/{id}", auth.RegistryWrite, cat, "delete", a.deleteDevice)
	a.route("GET /devices", auth.RegistryRead, cat, "list", a.listDevices)
	a.route("GET /devices/{$}", auth.RegistryRead, cat, "list", a.listDevices)
	a.route("POST /devices", auth.RegistryWrite, cat, "bulk", a.bulkDevices)
	a.route("POST /devices/{$}", auth.RegistryWrite, cat, "bulk", a.bulkDevices)
	a.route("GET /statistics/devices", auth.RegistryRead, cat, "getStatistics", a.statistics)
	a.route("GET /devices/{id}/modules", auth.RegistryRead, cat, "list", a.listModules)
	a.route("GET /devices/{id}/modules/{$}", auth.RegistryRead, cat, "list", a.listModules)
	a.route("PUT /devices/{id}/modules/{mid}", auth.RegistryWrite, cat, "create", a.putModule)
	a.route("GET /devices/{id}/modules/{mid}", auth.RegistryRead, cat, "get", a.getModule)
	a.route("DELETE /devices/{id}/modules/{mid}", auth.RegistryWrite, cat, "delete", a.deleteModule)
	a.telemetryRoutes()
	a.methodRoutes()
	a.twinRoutes()
	a.queryRoutes()
	a.fileUploadRoutes()
	a.c2dRoutes()
	a.jobRoutes()
	a.regJobRoutes()
}

// putDevice creates a device (no If-Match) or replaces it (If-Match: an etag or "*").
func (a *API) putDevice(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	var d registry.Device
	if err := readJSON(r, a.cfg.MaxBody, &d); err != nil {
		return err
	}
	if d.DeviceID == "" {
		d.DeviceID = id
	}
	if d.DeviceID != id {
		return errcode.New(errcode.ArgumentInvalid, "the deviceId in the body ('%s') does not match the one in the path ('%s')", sanitize(d.DeviceID), sanitize(id))
	}
	ifMatch := r.Header.Get("If-Match")
	var (
		out registry.Device
		err error
	)
	if ifMatch == "" {
		out, err = a.cfg.Registry.CreateDevice(r.Context(), d)
	} else {
		c.operation = "update"
		out, err = a.cfg.Registry.UpdateDevice(r.Context(), d, ifMatch)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request, _ *call) error {
	d, err := a.cfg.Registry.GetDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", `"`+d.ETag+`"`)
	return writeJSON(w, http.StatusOK, d)
}

func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request, _ *call) error {
	if err := a.cfg.Registry.DeleteDevice(r.Context(), r.PathValue("id"), r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request, _ *call) error {
	top := 0
	if s := r.URL.Query().Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return errcode.New(errcode.ArgumentInvalid, "top '%s' is not a number", sanitize(s))
		}
		top = n
	}
	devs, err := a.cfg.Registry.ListDevices(r.Context(), top)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, devs)
}

func (a *API) bulkDevices(w http.ResponseWriter, r *http.Request, c *call) error {
	var entries []registry.ImportDevice
	if err := readJSON(r, a.cfg.MaxBulkBody, &entries); err != nil {
		return err
	}
	if err := registry.CheckBulk(entries); err != nil {
		return err
	}
	if err := a.throttleBulk(r, len(entries)); err != nil {
		return err
	}
	res, err := a.cfg.Registry.Bulk(r.Context(), entries)
	if err != nil {
		return err
	}
	failed := map[[2]string]error{}
	for _, e := range res.Errors {
		failed[[2]string{e.DeviceID, e.ModuleID}] = e.Err
	}
	for _, e := range entries {
		c.extraErrors = append(c.extraErrors, entryError{
			operation: registry.BulkOperation(e.ImportMode), deviceID: e.ID, moduleID: e.ModuleID,
			err: failed[[2]string{e.ID, e.ModuleID}],
		})
	}
	status := http.StatusOK
	if !res.IsSuccessful {
		status = http.StatusBadRequest
		w.Header().Set("iothub-errorcode", errcode.BulkRegistryOperationFailure.Name())
	}
	return writeJSON(w, status, res)
}

func (a *API) statistics(w http.ResponseWriter, r *http.Request, _ *call) error {
	s, err := a.cfg.Registry.Statistics(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s)
}

func (a *API) putModule(w http.ResponseWriter, r *http.Request, c *call) error {
	id, mid := r.PathValue("id"), r.PathValue("mid")
	var m registry.Module
	if err := readJSON(r, a.cfg.MaxBody, &m); err != nil {
		return err
	}
	if m.DeviceID == "" {
		m.DeviceID = id
	}
	if m.ModuleID == "" {
		m.ModuleID = mid
	}
	if m.DeviceID != id || m.ModuleID != mid {
		return errcode.New(errcode.ArgumentInvalid, "the deviceId and moduleId in the body do not match the path")
	}
	ifMatch := r.Header.Get("If-Match")
	var (
		out registry.Module
		err error
	)
	if ifMatch == "" {
		out, err = a.cfg.Registry.CreateModule(r.Context(), m)
	} else {
		c.operation = "update"
		out, err = a.cfg.Registry.UpdateModule(r.Context(), m, ifMatch)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (a *API) getModule(w http.ResponseWriter, r *http.Request, _ *call) error {
	m, err := a.cfg.Registry.GetModule(r.Context(), r.PathValue("id"), r.PathValue("mid"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", `"`+m.ETag+`"`)
	return writeJSON(w, http.StatusOK, m)
}

func (a *API) deleteModule(w http.ResponseWriter, r *http.Request, _ *call) error {
	if err := a.cfg.Registry.DeleteModule(r.Context(), r.PathValue("id"), r.PathValue("mid"), r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listModules(w http.ResponseWriter, r *http.Request, _ *call) error {
	mods, err := a.cfg.Registry.ListModules(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, mods)
}
