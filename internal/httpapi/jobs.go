package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/jobs"
)

// jobRoutes serves jobs v2 (spec/service-api.md 2.9), as the service SDKs' JobClient calls
// them: PUT /jobs/v2/{jobId} schedules a twin update or device method job, GET reads it, POST
// .../cancel cancels it and GET /jobs/v2/query lists jobs by type and status.
//
// IoT Hub does not publish which permission jobs need. Roost takes ServiceConnect (the
// permission of twins, methods and queries, which is what a job does) or RegistryWrite (what a
// registry tool holds) for every jobs request, and RegistryRead too for reading and listing.
//
// Every request writes a JobsOperations record: jobCreate, jobCancel, jobRead or jobQuery, with
// jobId, sdkVersion (the api-version), messageSize, filter and startTimeUtc for a create.
func (a *API) jobRoutes() {
	if a.cfg.Jobs == nil {
		return
	}
	write := []auth.Right{auth.ServiceConnect, auth.RegistryWrite}
	read := []auth.Right{auth.ServiceConnect, auth.RegistryWrite, auth.RegistryRead}
	a.jobRoute("PUT /jobs/v2/{jobId}", write, diag.OpJobCreate, a.createJob)
	a.jobRoute("GET /jobs/v2/{jobId}", read, diag.OpJobRead, a.getJob)
	a.jobRoute("POST /jobs/v2/{jobId}/cancel", write, diag.OpJobCancel, a.cancelJob)
	a.jobRoute("GET /jobs/v2/query", read, diag.OpJobQuery, a.queryJobs)
}

// jobRoute is [API.route] for jobs: a policy with any of the rights may call it. The tier
// (basic tiers' refusal, the jobs operation rate) is applied by the jobs service itself.
func (a *API) jobRoute(pattern string, rights []auth.Right, operation string, h handlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &call{category: diag.JobsOperations, operation: operation,
			props: map[string]any{"jobId": r.PathValue("jobId"), "sdkVersion": r.URL.Query().Get("api-version")}}
		err := checkAPIVersion(r)
		if err == nil {
			err = a.authorizeAny(r, c, rights)
		}
		if err == nil {
			err = a.injectFault(r, c)
		}
		if err == nil {
			err = h(w, r, c)
		}
		trackingID := newTrackingID()
		if err != nil {
			a.writeError(w, err, trackingID)
		}
		a.record(r, c, err, trackingID, time.Since(start))
	})
}

// authorizeAny accepts a policy holding any of the rights; when none is held, the error for
// the first right is the one reported.
func (a *API) authorizeAny(r *http.Request, c *call, rights []auth.Right) error {
	hdr := r.Header.Get("Authorization")
	var first error
	for _, need := range rights {
		pol, err := a.cfg.Policies.AuthorizeService(r.Context(), hdr, need)
		if err == nil {
			c.policy = pol.KeyName
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// createJob answers 200 with the job as IoT Hub does: status "queued", whatever its start time.
func (a *API) createJob(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := readBody(r, jobs.MaxBody)
	c.props["messageSize"] = len(body)
	if err != nil {
		return err
	}
	job, err := a.cfg.Jobs.Create(r.Context(), r.PathValue("jobId"), body, jobs.Caller{APIVersion: r.URL.Query().Get("api-version")})
	if err != nil {
		return err
	}
	c.props["filter"] = job.QueryCondition
	c.props["startTimeUtc"] = job.StartTime.UTC().Format("Monday, January 2, 2006")
	c.props["duration"] = "0"
	return writeJSON(w, http.StatusOK, job)
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request, c *call) error {
	job, err := a.cfg.Jobs.Get(r.Context(), r.PathValue("jobId"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, job)
}

func (a *API) cancelJob(w http.ResponseWriter, r *http.Request, c *call) error {
	job, err := a.cfg.Jobs.Cancel(r.Context(), r.PathValue("jobId"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, job)
}

// queryJobs answers one page of jobs, filtered by ?jobType= and ?jobStatus=. The page size
// comes in x-ms-max-item-count (or ?pageSize=), the previous page's token in x-ms-continuation
// (or ?continuationToken=); the answer carries x-ms-item-type: jobResponse and, only while more
// pages follow, x-ms-continuation.
func (a *API) queryJobs(w http.ResponseWriter, r *http.Request, c *call) error {
	q := r.URL.Query()
	req := jobs.ListRequest{Type: q.Get("jobType"), Status: q.Get("jobStatus"),
		Continuation: r.Header.Get("x-ms-continuation")}
	if req.Continuation == "" {
		req.Continuation = q.Get("continuationToken")
	}
	size := r.Header.Get("x-ms-max-item-count")
	if size == "" {
		size = q.Get("pageSize")
	}
	if size != "" {
		n, err := strconv.Atoi(strings.TrimSpace(size))
		if err != nil || n < 1 {
			return errcode.New(errcode.ArgumentInvalid, "the page size '%s' is not a whole number of at least 1", sanitize(size))
		}
		req.PageSize = n
	}
	list, next, err := a.cfg.Jobs.List(r.Context(), req)
	if err != nil {
		return err
	}
	c.props["resultSize"] = strconv.Itoa(len(list))
	w.Header().Set("x-ms-item-type", "jobResponse")
	if next != "" {
		w.Header().Set("x-ms-continuation", next)
	}
	return writeJSON(w, http.StatusOK, list)
}
