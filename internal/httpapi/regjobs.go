package httpapi

import (
	"net/http"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/regjobs"
	"github.com/roost-iot/roost/internal/throttle"
)

// regJobRoutes serves IoT Hub's import/export jobs (Registry.exportDevicesToBlob,
// importDevicesFromBlob, getJob, listJobs, cancelJob) and the container SAS of the built-in
// blob store that such jobs, and their callers, can use. Scheduled jobs are /jobs/v2 (jobs.go).
func (a *API) regJobRoutes() {
	if a.cfg.RegJobs != nil {
		const cat = diag.JobsOperations
		a.route("POST /jobs/create", auth.RegistryWrite, cat, diag.OpJobCreate, a.createRegJob)
		a.route("GET /jobs", auth.RegistryRead, cat, diag.OpJobQuery, a.listRegJobs)
		a.route("GET /jobs/{$}", auth.RegistryRead, cat, diag.OpJobQuery, a.listRegJobs)
		a.route("GET /jobs/{jobId}", auth.RegistryRead, cat, diag.OpJobRead, a.getRegJob)
		a.route("DELETE /jobs/{jobId}", auth.RegistryWrite, cat, diag.OpJobCancel, a.cancelRegJob)
	}
	if a.cfg.BlobStore != nil {
		a.route("POST /files/containerSas", auth.RegistryWrite, diag.FileUploadOperations, "containerSas", a.containerSAS)
	}
}

// throttleRegJob applies the tier's jobs operations rate to an import/export job request, unless
// route() already did (once restClass maps JobsOperations).
func (a *API) throttleRegJob(r *http.Request, op string) error {
	th := a.cfg.Throttle
	if th == nil {
		return nil
	}
	if _, _, ok := restClass(diag.JobsOperations, op); ok {
		return nil
	}
	if err := th.JobsFeature(); err != nil { // 403010 on a basic tier, as for jobs v2
		return err
	}
	err := th.Wait(r.Context(), throttle.Jobs, 1)
	if err != nil {
		a.countThrottled(throttle.Jobs, err)
	}
	return err
}

func (a *API) createRegJob(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := a.throttleRegJob(r, diag.OpJobCreate); err != nil {
		return err
	}
	var req regjobs.Request
	if err := readJSON(r, a.cfg.MaxBody, &req); err != nil {
		return err
	}
	job, err := a.cfg.RegJobs.Create(r.Context(), req)
	if err != nil {
		return err
	}
	c.props = map[string]any{"jobId": job.JobID}
	return writeJSON(w, http.StatusOK, job)
}

func (a *API) listRegJobs(w http.ResponseWriter, r *http.Request, _ *call) error {
	if err := a.throttleRegJob(r, diag.OpJobQuery); err != nil {
		return err
	}
	jobs, err := a.cfg.RegJobs.List(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, jobs)
}

func (a *API) getRegJob(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("jobId")
	c.props = map[string]any{"jobId": sanitize(id)}
	if err := a.throttleRegJob(r, diag.OpJobRead); err != nil {
		return err
	}
	job, err := a.cfg.RegJobs.Get(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, job)
}

func (a *API) cancelRegJob(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("jobId")
	c.props = map[string]any{"jobId": sanitize(id)}
	if err := a.throttleRegJob(r, diag.OpJobCancel); err != nil {
		return err
	}
	job, err := a.cfg.RegJobs.Cancel(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, job)
}

// containerSASRequest is the body of POST /files/containerSas (Roost's own; IoT Hub has no
// blob store of its own).
type containerSASRequest struct {
	// Permissions are letters of r (read a blob), c (create one), w (write one). Empty means rcw.
	Permissions string `json:"permissions"`
	// ExpiresInSeconds is how long the SAS is valid: 60 s to 30 days. Zero means an hour.
	ExpiresInSeconds int64 `json:"expiresInSeconds"`
}

type containerSASAnswer struct {
	ContainerURI string    `json:"containerUri"`
	Container    string    `json:"container"`
	Expiry       time.Time `json:"expiry"`
}

// containerSAS hands out a container SAS URI for the built-in blob store's container: what
// export/import jobs take as outputBlobContainerUri and inputBlobContainerUri, and what a client
// uses to read devices.txt or put a file to import.
func (a *API) containerSAS(w http.ResponseWriter, r *http.Request, _ *call) error {
	var req containerSASRequest
	if r.ContentLength != 0 {
		if err := readJSON(r, a.cfg.MaxBody, &req); err != nil {
			return err
		}
	}
	if req.Permissions == "" {
		req.Permissions = "rcw"
	}
	for _, p := range req.Permissions {
		if p != 'r' && p != 'c' && p != 'w' {
			return errcode.New(errcode.ArgumentInvalid, "permissions may hold r, c and w, not '%c'", p)
		}
	}
	d := time.Hour
	if req.ExpiresInSeconds != 0 {
		d = time.Duration(req.ExpiresInSeconds) * time.Second
		if d < time.Minute || d > 30*24*time.Hour {
			return errcode.New(errcode.ArgumentInvalid, "expiresInSeconds must be between 60 and 2592000")
		}
	}
	exp := time.Now().Add(d).UTC().Truncate(time.Second)
	st := a.cfg.BlobStore
	return writeJSON(w, http.StatusOK, containerSASAnswer{
		ContainerURI: st.ContainerURI() + st.ContainerSAS(req.Permissions, exp), Container: st.Container(), Expiry: exp,
	})
}
