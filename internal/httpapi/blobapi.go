package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/upload"
)

// blobVersion is the Blob service version the endpoint answers with when a request names none
// (what @azure/storage-blob 12.8 sends).
const blobVersion = "2020-10-02"

// isBlobPath reports whether r is for the built-in blob endpoint at /{container}/{blob}, the
// URL device SDKs build from the file upload answer
// (https://{hostName}/{containerName}/{blobName}{sasToken}). The container is the store's one
// container, whose name cannot be one of IoT Hub's own first path segments (config.Validate
// checks), so no REST path is shadowed. The endpoint is served ahead of the mux: the mux would
// answer a path with "..", "." or "//" segments with a redirect, and the Blob service answers
// them, like any bad name, with 400 InvalidResourceName.
func (a *API) isBlobPath(r *http.Request) bool {
	if a.cfg.BlobStore == nil {
		return false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/"+a.cfg.BlobStore.Container())
	return ok && strings.HasPrefix(rest, "/")
}

// blobOp is one request to the blob endpoint.
type blobOp struct {
	name      string
	operation string // upload.OpUpload or upload.OpRead
	requestID string
	start     time.Time
}

func (a *API) serveBlob(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/"+a.cfg.BlobStore.Container()+"/")
	op := &blobOp{name: name, operation: upload.OpUpload, requestID: newRequestGUID(), start: time.Now()}
	h := w.Header()
	h.Set("x-ms-request-id", op.requestID)
	ver := r.Header.Get("x-ms-version")
	if ver == "" {
		ver = blobVersion
	}
	h.Set("x-ms-version", ver)
	if id := r.Header.Get("x-ms-client-request-id"); id != "" {
		h.Set("x-ms-client-request-id", id)
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		op.operation = upload.OpRead
	}
	var err error
	if err = blob.CheckName(op.name); err == nil {
		err = a.blobOperation(w, r, op)
	}
	if err != nil {
		a.writeBlobError(w, r, op, err)
	}
}

func (a *API) blobOperation(w http.ResponseWriter, r *http.Request, op *blobOp) error {
	st := a.cfg.BlobStore
	q := r.URL.Query()
	comp := q.Get("comp")
	ip := remoteIP(r)
	switch r.Method {
	case http.MethodPut:
		need := "w"
		if comp == "" {
			need = "cw" // Put Blob: create or write
		}
		if comp != "" && comp != "block" && comp != "blocklist" {
			return blob.Fail(http.StatusBadRequest, blob.CodeInvalidQueryParameterValue,
				"Value for one of the query parameters specified in the request URI is invalid: comp=%s is not supported by this endpoint.", sanitize(comp))
		}
		if err := st.Authorize(q, op.name, need, ip); err != nil {
			return err
		}
		switch comp {
		case "block":
			return a.putBlock(w, r, op)
		case "blocklist":
			return a.putBlockList(w, r, op)
		}
		return a.putBlob(w, r, op)
	case http.MethodGet, http.MethodHead:
		if comp != "" {
			return blob.Fail(http.StatusBadRequest, blob.CodeInvalidQueryParameterValue,
				"Value for one of the query parameters specified in the request URI is invalid: comp=%s is not supported by this endpoint.", sanitize(comp))
		}
		if err := st.Authorize(q, op.name, "r", ip); err != nil {
			return err
		}
		return a.getBlob(w, r, op)
	}
	return blob.Fail(http.StatusMethodNotAllowed, blob.CodeUnsupportedHTTPVerb, "The resource doesn't support the specified HTTP verb %s.", sanitize(r.Method))
}

// contentLength returns the request's Content-Length; the Blob service requires one on writes.
func contentLength(r *http.Request) (int64, error) {
	if r.ContentLength < 0 {
		return 0, blob.Fail(http.StatusLengthRequired, blob.CodeMissingContentLength, "Content-Length HTTP header is missing.")
	}
	return r.ContentLength, nil
}

// contentMD5 reads a Content-MD5 header; nil when absent.
func contentMD5(h http.Header, name string) ([]byte, error) {
	v := h.Get(name)
	if v == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(b) != 16 {
		return nil, blob.Fail(http.StatusBadRequest, blob.CodeInvalidHeaderValue,
			"The value for one of the HTTP headers is not in the correct format: %s.", name)
	}
	return b, nil
}

// idleBody reads a request body, ending the read when the client sends nothing for the idle
// time: an upload that stops halfway fails instead of holding its connection forever.
type idleBody struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	return b.r.Read(p)
}

func (a *API) body(w http.ResponseWriter, r *http.Request) (io.Reader, func()) {
	idle := a.cfg.BlobIdleTimeout
	if idle <= 0 {
		idle = 2 * time.Minute
	}
	rc := http.NewResponseController(w)
	return &idleBody{r: r.Body, rc: rc, idle: idle}, func() { _ = rc.SetReadDeadline(time.Time{}) }
}

func (a *API) putBlock(w http.ResponseWriter, r *http.Request, op *blobOp) error {
	raw := r.URL.Query().Get("blockid")
	if raw == "" {
		return blob.Fail(http.StatusBadRequest, blob.CodeMissingRequiredQueryParameter,
			"A query parameter that's mandatory for this request is not specified: blockid.")
	}
	id, err := blob.DecodeBlockID(raw)
	if err != nil {
		return err
	}
	size, err := contentLength(r)
	if err != nil {
		return err
	}
	want, err := contentMD5(r.Header, "Content-MD5")
	if err != nil {
		return err
	}
	body, done := a.body(w, r)
	defer done()
	sum, err := a.cfg.BlobStore.StageBlock(r.Context(), op.name, id, body, size, want)
	if err != nil {
		return err
	}
	a.countBytes(size)
	if sum != nil {
		w.Header().Set("Content-MD5", base64.StdEncoding.EncodeToString(sum))
	}
	w.Header().Set("x-ms-request-server-encrypted", "false")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (a *API) countBytes(n int64) {
	if a.cfg.Metrics != nil && n > 0 {
		a.cfg.Metrics.Uploads.BlobBytesWritten.Add(float64(n))
	}
}

// blobHeaders reads the properties a Put Blob or Put Block List sets.
func blobHeaders(h http.Header, putBlob bool) (blob.Headers, error) {
	out := blob.Headers{
		ContentType: h.Get("x-ms-blob-content-type"), ContentEncoding: h.Get("x-ms-blob-content-encoding"),
		ContentLanguage: h.Get("x-ms-blob-content-language"), ContentDisposition: h.Get("x-ms-blob-content-disposition"),
		CacheControl: h.Get("x-ms-blob-cache-control"),
	}
	if putBlob {
		// Put Blob also takes the standard headers for the blob itself.
		if out.ContentType == "" {
			out.ContentType = h.Get("Content-Type")
		}
		if out.ContentEncoding == "" {
			out.ContentEncoding = h.Get("Content-Encoding")
		}
		if out.ContentLanguage == "" {
			out.ContentLanguage = h.Get("Content-Language")
		}
	}
	md, err := contentMD5(h, "x-ms-blob-content-md5")
	if err != nil {
		return out, err
	}
	out.ContentMD5 = md
	for k, v := range h {
		lk := strings.ToLower(k)
		if name, ok := strings.CutPrefix(lk, "x-ms-meta-"); ok && name != "" && len(v) > 0 {
			if out.Metadata == nil {
				out.Metadata = map[string]string{}
			}
			out.Metadata[name] = v[0]
		}
	}
	return out, nil
}

func conditions(h http.Header) blob.Conditions {
	return blob.Conditions{IfMatch: h.Get("If-Match"), IfNoneMatch: h.Get("If-None-Match")}
}

func (a *API) putBlockList(w http.ResponseWriter, r *http.Request, op *blobOp) error {
	if r.ContentLength > blob.MaxBlockListBody {
		return blob.Fail(http.StatusRequestEntityTooLarge, blob.CodeRequestBodyTooLarge,
			"The request body is too large and exceeds the maximum permissible limit of %d bytes.", blob.MaxBlockListBody)
	}
	hdr, err := blobHeaders(r.Header, false)
	if err != nil {
		return err
	}
	body, done := a.body(w, r)
	refs, err := blob.ParseBlockList(body)
	done()
	if err != nil {
		return err
	}
	p, err := a.cfg.BlobStore.CommitBlockList(r.Context(), op.name, refs, hdr, conditions(r.Header))
	if err != nil {
		return err
	}
	writeWritten(w, p)
	return nil
}

func (a *API) putBlob(w http.ResponseWriter, r *http.Request, op *blobOp) error {
	switch bt := r.Header.Get("x-ms-blob-type"); {
	case bt == "":
		return blob.Fail(http.StatusBadRequest, blob.CodeMissingRequiredHeader,
			"An HTTP header that's mandatory for this request is not specified: x-ms-blob-type.")
	case !strings.EqualFold(bt, "BlockBlob"):
		return blob.Fail(http.StatusBadRequest, blob.CodeInvalidHeaderValue,
			"The value for one of the HTTP headers is not in the correct format: x-ms-blob-type (this endpoint stores block blobs only).")
	}
	size, err := contentLength(r)
	if err != nil {
		return err
	}
	want, err := contentMD5(r.Header, "Content-MD5")
	if err != nil {
		return err
	}
	hdr, err := blobHeaders(r.Header, true)
	if err != nil {
		return err
	}
	body, done := a.body(w, r)
	defer done()
	p, err := a.cfg.BlobStore.PutBlob(r.Context(), op.name, body, size, hdr, conditions(r.Header), want)
	if err != nil {
		return err
	}
	a.countBytes(size)
	w.Header().Set("Content-MD5", base64.StdEncoding.EncodeToString(p.ContentMD5))
	writeWritten(w, p)
	return nil
}

// writeWritten answers a successful write: 201 with the new version's ETag and time.
func writeWritten(w http.ResponseWriter, p blob.Props) {
	h := w.Header()
	h["ETag"] = []string{`"` + p.ETag + `"`}
	h.Set("Last-Modified", p.Modified.UTC().Format(http.TimeFormat))
	h.Set("x-ms-request-server-encrypted", "false")
	w.WriteHeader(http.StatusCreated)
}

// getBlob serves Get Blob and Get Blob Properties (HEAD), with ranges (Range or x-ms-range) and
// conditional requests.
func (a *API) getBlob(w http.ResponseWriter, r *http.Request, op *blobOp) error {
	f, p, err := a.cfg.BlobStore.Open(r.Context(), op.name)
	if err != nil {
		return err
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", p.ContentType)
	h["ETag"] = []string{`"` + p.ETag + `"`}
	h.Set("x-ms-blob-type", "BlockBlob")
	h.Set("x-ms-creation-time", p.Created.UTC().Format(http.TimeFormat))
	h.Set("x-ms-lease-state", "available")
	h.Set("x-ms-lease-status", "unlocked")
	h.Set("x-ms-server-encrypted", "false")
	h.Set("Accept-Ranges", "bytes")
	for k, v := range map[string]string{"Content-Encoding": p.ContentEncoding, "Content-Language": p.ContentLanguage,
		"Content-Disposition": p.ContentDisposition, "Cache-Control": p.CacheControl} {
		if v != "" {
			h.Set(k, v)
		}
	}
	for k, v := range p.Metadata {
		h.Set("x-ms-meta-"+k, v)
	}
	if rg := r.Header.Get("x-ms-range"); rg != "" && r.Header.Get("Range") == "" {
		r.Header.Set("Range", rg)
	}
	if len(p.ContentMD5) > 0 {
		name := "Content-MD5"
		if r.Header.Get("Range") != "" {
			name = "x-ms-blob-content-md5"
		}
		h.Set(name, base64.StdEncoding.EncodeToString(p.ContentMD5))
	}
	http.ServeContent(w, r, "", p.Modified, f)
	return nil
}

// storageErrorBody is the Blob service's XML error body.
type storageErrorBody struct {
	XMLName xml.Name `xml:"Error"`
	Code    string   `xml:"Code"`
	Message string   `xml:"Message"`
	Detail  string   `xml:"AuthenticationErrorDetail,omitempty"`
}

// writeBlobError answers a failed blob request as the Blob service does (status, x-ms-error-code,
// XML body with the request id and time; no body for HEAD) and writes its FileUploadOperations
// record.
func (a *API) writeBlobError(w http.ResponseWriter, r *http.Request, op *blobOp, err error) {
	se := blob.AsStorageError(err)
	e := errcode.As(err)
	if se.Status >= 500 {
		a.log.Error("blob request failed", "blob", op.name, "err", e, "requestId", op.requestID)
	}
	now := time.Now().UTC()
	msg := sanitize(e.Msg) + "\nRequestId:" + op.requestID + "\nTime:" + now.Format("2006-01-02T15:04:05.0000000Z")
	h := w.Header()
	h.Set("x-ms-error-code", se.Code)
	if r.Method != http.MethodHead {
		body, _ := xml.Marshal(storageErrorBody{Code: se.Code, Message: msg, Detail: se.Detail})
		h.Set("Content-Type", "application/xml")
		h.Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)))
		w.WriteHeader(se.Status)
		_, _ = io.WriteString(w, xml.Header)
		_, _ = w.Write(body)
	} else {
		w.WriteHeader(se.Status)
	}
	if a.cfg.Diag == nil {
		return
	}
	dev, _, _ := strings.Cut(op.name, "/")
	rec := upload.Failure{DeviceID: dev, BlobURI: a.cfg.BlobStore.URI(op.name), Operation: op.operation,
		MaskedIP: diag.MaskIP(r.RemoteAddr), StorageCode: se.Code, CorrelationID: op.requestID,
		Duration: time.Since(op.start), Err: err}.Record()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	a.cfg.Diag.Write(ctx, rec)
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.OperationErrors.WithLabelValues(diag.FileUploadOperations, errcode.As(err).Code.String()).Inc()
	}
}

// newRequestGUID makes an x-ms-request-id in the Blob service's GUID form.
func newRequestGUID() string {
	t := newTrackingID()
	return t[:8] + "-" + t[8:12] + "-" + t[12:16] + "-" + t[16:20] + "-" + t[20:]
}

func remoteIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return net.ParseIP(host)
}
