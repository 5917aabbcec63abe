package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/upload"
)

// fileUploadRoutes serves file uploads (device-protocol.md §11.3): the device side
// (initiate, notify completion), the service side's notification queue, the hub's list of
// uploaded files, and the built-in blob endpoint.
func (a *API) fileUploadRoutes() {
	if a.cfg.Uploads == nil {
		return
	}
	// The C SDK adds a trailing slash to both paths; Node puts the correlation id in the path of
	// the notification, Python and C put it in the body.
	a.uploadRoute("POST /devices/{id}/files", upload.OpInit, a.startUpload)
	a.uploadRoute("POST /devices/{id}/files/{$}", upload.OpInit, a.startUpload)
	a.uploadRoute("POST /devices/{id}/files/notifications", upload.OpComplete, a.completeUpload)
	a.uploadRoute("POST /devices/{id}/files/notifications/{$}", upload.OpComplete, a.completeUpload)
	a.uploadRoute("POST /devices/{id}/files/notifications/{cid}", upload.OpComplete, a.completeUpload)

	const cat = diag.FileUploadOperations
	if a.cfg.Uploads.Notifications() != nil {
		// The SDKs address the queue as /messages/serviceBound/filenotifications; IoT Hub's docs
		// also write servicebound.
		for _, p := range []string{"/messages/serviceBound/filenotifications", "/messages/servicebound/filenotifications"} {
			a.route("GET "+p, auth.ServiceConnect, cat, upload.OpNotify+".receive", failuresOnly(a.receiveFileNotification))
			a.route("DELETE "+p+"/{lockToken}", auth.ServiceConnect, cat, upload.OpNotify+".complete", failuresOnly(a.completeFileNotification))
			a.route("POST "+p+"/{lockToken}/abandon", auth.ServiceConnect, cat, upload.OpNotify+".abandon", failuresOnly(a.abandonFileNotification))
		}
	}
	a.route("GET /files", auth.ServiceConnect, cat, upload.OpRead, failuresOnly(a.listFiles))
	a.route("GET /files/{id}/{name...}", auth.ServiceConnect, cat, upload.OpRead, failuresOnly(a.getFile))
}

// uploadCall carries what a failed upload request's record needs.
type uploadCall struct {
	operation string
	deviceID  string
	id        auth.Identity
	blobURI   string
}

type uploadHandlerFunc func(w http.ResponseWriter, r *http.Request, c *uploadCall) error

// uploadRoute registers a device-facing file upload endpoint. Like [API.deviceRoute] it
// authenticates the device named in the path (SAS token or X.509 thumbprint; modules cannot
// upload files, as on IoT Hub); a failure answers with IoT Hub's error body and writes one
// FileUploadOperations record, with the blob's URI when the request got that far.
func (a *API) uploadRoute(pattern, operation string, h uploadHandlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &uploadCall{operation: operation, deviceID: r.PathValue("id")}
		err := checkAPIVersion(r)
		if err == nil {
			c.id, err = a.authenticateDevice(r, c.deviceID, "")
		}
		if err == nil {
			err = a.throttle(r, diag.FileUploadOperations, operation)
		}
		if err == nil {
			err = h(w, r, c)
		}
		if err == nil {
			return
		}
		trackingID := newTrackingID()
		a.writeError(w, err, trackingID)
		if a.cfg.Diag == nil {
			return
		}
		authType := ""
		if c.id.DeviceID != "" {
			authType = c.id.AuthTypeJSON()
		}
		rec := upload.Failure{DeviceID: c.deviceID, AuthType: authType, BlobURI: c.blobURI, Operation: c.operation,
			MaskedIP: diag.MaskIP(r.RemoteAddr), CorrelationID: trackingID, Duration: time.Since(start), Err: err}.Record()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer cancel()
		a.cfg.Diag.Write(ctx, rec)
		if a.cfg.Metrics != nil {
			a.cfg.Metrics.OperationErrors.WithLabelValues(diag.FileUploadOperations, errcode.As(err).Code.String()).Inc()
		}
	})
}

// startUpload answers POST /devices/{id}/files {"blobName": ...} with the SAS URI parts.
func (a *API) startUpload(w http.ResponseWriter, r *http.Request, c *uploadCall) error {
	var body struct {
		BlobName *string `json:"blobName"`
	}
	if err := readJSON(r, a.cfg.MaxBody, &body); err != nil {
		return err
	}
	if body.BlobName == nil {
		return errcode.New(errcode.ArgumentNull, "blobName is required")
	}
	st, err := a.cfg.Uploads.Start(r.Context(), upload.Request{DeviceID: c.id.DeviceID, BlobName: *body.BlobName, AuthType: c.id.AuthTypeJSON()})
	if err != nil {
		if name, nerr := upload.BlobName(c.id.DeviceID, *body.BlobName); nerr == nil {
			c.blobURI = a.cfg.Uploads.URI(name)
		}
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// completeUpload takes a device's completion notice: {correlationId, isSuccess, statusCode,
// statusDescription}, or the same without correlationId when the path carries it (Node).
func (a *API) completeUpload(w http.ResponseWriter, r *http.Request, c *uploadCall) error {
	res, err := readCompletion(r, a.cfg.MaxBody)
	if err != nil {
		return err
	}
	if cid := r.PathValue("cid"); cid != "" {
		res.CorrelationID = cid
	}
	res.DeviceID = c.id.DeviceID
	done, err := a.cfg.Uploads.Complete(r.Context(), res)
	c.blobURI = done.BlobURI
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// readCompletion decodes a completion notice. isSuccess must be a JSON boolean and statusCode a
// number (400019 otherwise); statusDescription is optional text.
func readCompletion(r *http.Request, limit int64) (upload.Result, error) {
	var raw map[string]json.RawMessage
	if err := readJSON(r, limit, &raw); err != nil {
		return upload.Result{}, err
	}
	var res upload.Result
	bad := func(format string, args ...any) (upload.Result, error) {
		return upload.Result{}, errcode.New(errcode.InvalidFileUploadCompletionStatus, format, args...)
	}
	if v, ok := raw["correlationId"]; ok && !isNull(v) {
		if err := json.Unmarshal(v, &res.CorrelationID); err != nil {
			return upload.Result{}, errcode.New(errcode.InvalidFileUploadCorrelationId, "correlationId must be a string")
		}
	}
	if v, ok := raw["isSuccess"]; ok && !isNull(v) {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return bad("isSuccess must be true or false")
		}
		res.IsSuccess = &b
	}
	if v, ok := raw["statusCode"]; ok && !isNull(v) {
		var n float64
		if err := json.Unmarshal(v, &n); err != nil {
			s := strings.Trim(string(v), `"`)
			if n, err = strconv.ParseFloat(s, 64); err != nil {
				return bad("statusCode must be a number")
			}
		}
		res.StatusCode = int(n)
	}
	if v, ok := raw["statusDescription"]; ok && !isNull(v) {
		if err := json.Unmarshal(v, &res.StatusDescription); err != nil {
			res.StatusDescription = string(v) // keep whatever the device said, it is only logged
		}
	}
	return res, nil
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// receiveFileNotification hands out the oldest file upload notification under a lock: 200 with
// the notification and its lock token as the quoted ETag, or 204 when there is none.
func (a *API) receiveFileNotification(w http.ResponseWriter, r *http.Request, _ *call) error {
	n, ok, err := a.cfg.Uploads.Notifications().Receive(r.Context())
	if err != nil {
		return err
	}
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	h := w.Header()
	// Set the map directly: some SDKs read ETag case-sensitively (Go would write Etag).
	h["ETag"] = []string{`"` + n.LockToken + `"`}
	h["iothub-deliverycount"] = []string{strconv.Itoa(n.DeliveryCount)}
	h["iothub-enqueuedtime"] = []string{n.EnqueuedTimeUtc.Format(time.RFC3339Nano)}
	h.Set("Content-Type", "application/vnd.microsoft.iothub.filenotification.json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(n.Body)
	return nil
}

func (a *API) completeFileNotification(w http.ResponseWriter, r *http.Request, _ *call) error {
	if err := a.cfg.Uploads.Notifications().Complete(r.Context(), r.PathValue("lockToken")); err != nil {
		return err
	}
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.Uploads.NotificationsCompleted.Inc()
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) abandonFileNotification(w http.ResponseWriter, r *http.Request, _ *call) error {
	if err := a.cfg.Uploads.Notifications().Abandon(r.Context(), r.PathValue("lockToken")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// FileInfo is one uploaded file in GET /files.
type FileInfo struct {
	DeviceID    string    `json:"deviceId"`
	BlobName    string    `json:"blobName"`
	BlobURI     string    `json:"blobUri"`
	Size        int64     `json:"blobSizeInBytes"`
	LastUpdated time.Time `json:"lastUpdatedTime"`
	ContentType string    `json:"contentType,omitempty"`
	ETag        string    `json:"etag,omitempty"`
	// Node is set only for a file an older Roost kept in that node's data dir and that node
	// has not yet imported into the engine (it does when it starts with this version).
	Node          string `json:"node,omitempty"`
	ContainerName string `json:"containerName"`
}

func fileInfo(p blob.Props) FileInfo {
	return FileInfo{DeviceID: p.DeviceID(), BlobName: p.Name, BlobURI: p.URI, Size: p.Size, LastUpdated: p.Modified.UTC(),
		ContentType: p.ContentType, ETag: p.ETag, Node: p.Node, ContainerName: p.Container}
}

// maxFileList bounds GET /files.
const maxFileList = 10000

// listFiles answers GET /files[?deviceId=D] with the uploaded files, oldest write first.
func (a *API) listFiles(w http.ResponseWriter, r *http.Request, c *call) error {
	dev := r.URL.Query().Get("deviceId")
	c.deviceID = dev
	out := []FileInfo{}
	err := a.cfg.Uploads.Files(r.Context(), dev, func(p blob.Props) bool {
		out = append(out, fileInfo(p))
		return len(out) < maxFileList
	})
	if err != nil {
		return errcode.Wrap(errcode.ServerError, err, "could not list the files")
	}
	return writeJSON(w, http.StatusOK, out)
}

// getFile answers GET /files/{deviceId}/{name} with the file's content; an empty name lists the
// device's files.
func (a *API) getFile(w http.ResponseWriter, r *http.Request, c *call) error {
	dev, name := r.PathValue("id"), r.PathValue("name")
	if name == "" {
		q := r.URL.Query()
		q.Set("deviceId", dev)
		r.URL.RawQuery = q.Encode()
		return a.listFiles(w, r, c)
	}
	rc, p, err := a.cfg.Uploads.OpenFile(r.Context(), dev+"/"+name)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", p.ContentType)
	if p.ContentType == "" {
		h.Set("Content-Type", "application/octet-stream")
	}
	h.Set("Content-Length", strconv.FormatInt(p.Size, 10))
	h.Set("Last-Modified", p.Modified.UTC().Format(http.TimeFormat))
	if p.ETag != "" {
		h["ETag"] = []string{`"` + p.ETag + `"`}
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, rc); err != nil && !errors.Is(err, context.Canceled) {
		a.log.Debug("file download ended early", "blob", p.Name, "err", err)
	}
	return nil
}
