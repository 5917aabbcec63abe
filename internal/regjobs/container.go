package regjobs

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/errcode"
)

// container is a blob container a job reads from or writes to, named by a container SAS URI.
type container interface {
	put(ctx context.Context, name string, body io.Reader, size int64) error
	get(ctx context.Context, name string) (io.ReadCloser, int64, error)
}

// openContainer picks how to reach a container: through the built-in store's API when the URI
// names it, with Azure Blob REST (Put Blob, Get Blob) otherwise.
func (s *Service) openContainer(raw string) (container, error) {
	u, err := parseContainer(raw)
	if err != nil {
		return nil, err
	}
	if st := s.cfg.Blobs; st != nil {
		own, err := url.Parse(st.ContainerURI())
		if err == nil && strings.EqualFold(u.Host, own.Host) && strings.Trim(u.Path, "/") == st.Container() {
			return builtin{st: st, q: u.Query()}, nil
		}
	}
	return &remote{base: u, client: s.cfg.HTTPClient}, nil
}

// builtin is the hub's own blob store. The container SAS is checked as the blob endpoint
// checks it, so a job can do nothing its URI's holder could not.
type builtin struct {
	st *blob.Local
	q  url.Values
}

func (b builtin) put(ctx context.Context, name string, body io.Reader, size int64) error {
	if err := b.st.Authorize(b.q, name, "cw", nil); err != nil {
		return storageErr(err, "write", name)
	}
	if _, err := b.st.PutBlob(ctx, name, body, size, blob.Headers{ContentType: "text/plain; charset=utf-8"}, blob.Conditions{}, nil); err != nil {
		return storageErr(err, "write", name)
	}
	return nil
}

func (b builtin) get(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	if err := b.st.Authorize(b.q, name, "r", nil); err != nil {
		return nil, 0, storageErr(err, "read", name)
	}
	rc, p, err := b.st.OpenReader(ctx, name)
	if err != nil {
		return nil, 0, storageErr(err, "read", name)
	}
	return rc, p.Size, nil
}

func storageErr(err error, verb, name string) error {
	return errcode.Wrap(errcode.InvalidStorageEndpointOrBlob, err, "could not %s blob %s in the container: %s", verb, name, errcode.As(err).Msg)
}

// remote is any Azure Blob endpoint (Azure Storage, Azurite): the blob's URL is the container's
// with the name appended, and the container SAS as its query.
type remote struct {
	base   *url.URL
	client *http.Client
}

// storageVersion is the Blob service version the job's requests ask for.
const storageVersion = "2020-10-02"

func (r *remote) blobURL(name string) string {
	u := *r.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + name
	u.RawPath = ""
	return u.String()
}

func (r *remote) put(ctx context.Context, name string, body io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, r.blobURL(name), body)
	if err != nil {
		return errcode.Wrap(errcode.InvalidStorageEndpoint, err, "bad blob URL")
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("x-ms-blob-type", "BlockBlob")
	req.Header.Set("x-ms-version", storageVersion)
	req.Header.Set("x-ms-blob-content-type", "text/plain; charset=utf-8")
	resp, err := r.client.Do(req)
	if err != nil {
		return errcode.Wrap(errcode.InvalidStorageEndpoint, err, "could not reach the storage endpoint %s", r.base.Host)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return r.fail(resp, "write", name)
	}
	return nil
}

func (r *remote) get(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.blobURL(name), nil)
	if err != nil {
		return nil, 0, errcode.Wrap(errcode.InvalidStorageEndpoint, err, "bad blob URL")
	}
	req.Header.Set("x-ms-version", storageVersion)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, 0, errcode.Wrap(errcode.InvalidStorageEndpoint, err, "could not reach the storage endpoint %s", r.base.Host)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, 0, r.fail(resp, "read", name)
	}
	return resp.Body, resp.ContentLength, nil
}

// fail reports a storage error with the Blob service's error code.
func (r *remote) fail(resp *http.Response, verb, name string) error {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.Header.Get("x-ms-error-code")
	if code == "" {
		code = resp.Status
	}
	return errcode.New(errcode.InvalidStorageEndpointOrBlob, "%s",
		fmt.Sprintf("storage refused to %s blob %s: %d %s", verb, name, resp.StatusCode, code))
}
