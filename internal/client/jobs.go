package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// Job is a jobs v2 job as the hub answers it (JobResponse), kept as JSON.
type Job = map[string]any

// ScheduleJob creates a jobs v2 job (PUT /jobs/v2/{id}) from its description: type,
// queryCondition, startTime, maxExecutionTimeInSeconds, and updateTwin or cloudToDeviceMethod.
func (c *Client) ScheduleJob(ctx context.Context, id string, desc map[string]any) (Job, error) {
	body := map[string]any{"jobId": id}
	for k, v := range desc {
		body[k] = v
	}
	var out Job
	_, err := c.Do(ctx, http.MethodPut, "/jobs/v2/"+url.PathEscape(id), nil, nil, body, &out)
	return out, err
}

// GetJob reads a job (GET /jobs/v2/{id}).
func (c *Client) GetJob(ctx context.Context, id string) (Job, error) {
	var out Job
	_, err := c.Do(ctx, http.MethodGet, "/jobs/v2/"+url.PathEscape(id), nil, nil, nil, &out)
	return out, err
}

// CancelJob cancels a job (POST /jobs/v2/{id}/cancel).
func (c *Client) CancelJob(ctx context.Context, id string) (Job, error) {
	var out Job
	_, err := c.Do(ctx, http.MethodPost, "/jobs/v2/"+url.PathEscape(id)+"/cancel", nil, nil, nil, &out)
	return out, err
}

// ListJobs reads every page of GET /jobs/v2/query, filtered by type and status when not empty.
func (c *Client) ListJobs(ctx context.Context, jobType, status string) ([]Job, error) {
	q := url.Values{}
	if jobType != "" {
		q.Set("jobType", jobType)
	}
	if status != "" {
		q.Set("jobStatus", status)
	}
	var all []Job
	token := ""
	for {
		h := http.Header{}
		h.Set("x-ms-max-item-count", "1000")
		if token != "" {
			h.Set("x-ms-continuation", token)
		}
		var page []json.RawMessage
		hdr, err := c.Do(ctx, http.MethodGet, "/jobs/v2/query", q, h, nil, &page)
		if err != nil {
			return nil, err
		}
		for _, raw := range page {
			var j Job
			if err := json.Unmarshal(raw, &j); err != nil {
				return nil, err
			}
			all = append(all, j)
		}
		if token = hdr.Get("x-ms-continuation"); token == "" {
			return all, nil
		}
	}
}
