package client

import (
	"context"
	"net/http"
	"time"
)

// ContainerSAS is a container SAS URI of the hub's built-in blob store.
type ContainerSAS struct {
	ContainerURI string    `json:"containerUri"`
	Container    string    `json:"container"`
	Expiry       time.Time `json:"expiry"`
}

// ContainerSAS asks the hub for a SAS URI of its built-in blob container with permissions of r,
// c and w, valid for d (zero: an hour), as import/export jobs take it.
func (c *Client) ContainerSAS(ctx context.Context, perms string, d time.Duration) (ContainerSAS, error) {
	body := map[string]any{"permissions": perms}
	if d > 0 {
		body["expiresInSeconds"] = int64(d / time.Second)
	}
	var out ContainerSAS
	_, err := c.Do(ctx, http.MethodPost, "/files/containerSas", nil, nil, body, &out)
	return out, err
}

// RegistryJob is an import/export job (IoT Hub's JobProperties).
type RegistryJob struct {
	JobID                  string     `json:"jobId"`
	Type                   string     `json:"type"`
	Status                 string     `json:"status"`
	Progress               int        `json:"progress"`
	StartTimeUTC           *time.Time `json:"startTimeUtc,omitempty"`
	EndTimeUTC             *time.Time `json:"endTimeUtc,omitempty"`
	InputBlobContainerURI  string     `json:"inputBlobContainerUri,omitempty"`
	InputBlobName          string     `json:"inputBlobName,omitempty"`
	OutputBlobContainerURI string     `json:"outputBlobContainerUri,omitempty"`
	OutputBlobName         string     `json:"outputBlobName,omitempty"`
	ExcludeKeysInExport    bool       `json:"excludeKeysInExport"`
	FailureReason          string     `json:"failureReason,omitempty"`
}

// CreateRegistryJob starts an import or export job (POST /jobs/create); body is the request
// IoT Hub takes: type, inputBlobContainerUri, outputBlobContainerUri, excludeKeysInExport, ...
func (c *Client) CreateRegistryJob(ctx context.Context, body map[string]any) (RegistryJob, error) {
	var out RegistryJob
	_, err := c.Do(ctx, http.MethodPost, "/jobs/create", nil, nil, body, &out)
	return out, err
}

// RegistryJob returns an import/export job.
func (c *Client) RegistryJob(ctx context.Context, id string) (RegistryJob, error) {
	var out RegistryJob
	_, err := c.Do(ctx, http.MethodGet, "/jobs/"+id, nil, nil, nil, &out)
	return out, err
}
