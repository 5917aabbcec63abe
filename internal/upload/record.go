package upload

import (
	"strconv"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
)

// Operation names of FileUploadOperations records. IoT Hub logs file uploads as "ingress";
// Roost adds what part of the upload failed after a dot, so a query can tell them apart and
// `where OperationName startswith "ingress"` still finds them all.
const (
	OpInit     = diag.OpUploadInitiate     // POST /devices/{id}/files
	OpComplete = diag.OpUploadNotify       // POST /devices/{id}/files/notifications
	OpExpire   = diag.OpIngress            // the SAS expired before the completion was notified
	OpUpload   = diag.OpUploadWrite        // a write to the blob endpoint (Put Blob, Put Block, Put Block List)
	OpRead     = diag.OpUploadRead         // a read of the blob endpoint or of /files (Get Blob, Get Blob Properties)
	OpNotify   = diag.OpUploadNotification // the service side's file notification queue
)

// Failure describes a failed file upload operation. Every edge turns it into the same
// FileUploadOperations record.
type Failure struct {
	DeviceID string
	// Protocol is "Https" unless set.
	Protocol string
	// AuthType is the device's authType JSON; empty when the request carried no device identity
	// (blob requests authorize with a storage SAS).
	AuthType string
	// BlobURI is the blob's URL, when the operation concerns one.
	BlobURI string
	// Operation is one of the Op names.
	Operation string
	// MaskedIP is the caller's address as diag.MaskIP gives it.
	MaskedIP string
	// StorageCode is the Blob service error code the blob endpoint answered with.
	StorageCode string
	// CorrelationID ties the record to the tracking id (or x-ms-request-id) the caller got.
	CorrelationID string
	// Duration is how long the operation took; zero leaves durationMs out.
	Duration time.Duration
	Err      error
}

// Record returns the FileUploadOperations record of the failure: level Error, the code as
// resultType, properties deviceId, protocol, authType, blobUri and statusCode.
func (f Failure) Record() diag.Record {
	var authType any
	if f.AuthType != "" {
		authType = f.AuthType
	}
	proto := f.Protocol
	if proto == "" {
		proto = "Https"
	}
	status := 500
	if e := errcode.As(f.Err); e != nil {
		status = e.Code.HTTPStatus()
	}
	props := map[string]any{
		"deviceId":   f.DeviceID,
		"protocol":   proto,
		"authType":   authType,
		"blobUri":    f.BlobURI,
		"statusCode": strconv.Itoa(status),
	}
	if f.MaskedIP != "" {
		props["maskedIpAddress"] = f.MaskedIP
	}
	if f.StorageCode != "" {
		props["storageErrorCode"] = f.StorageCode
	}
	ms := int64(-1)
	if f.Duration > 0 {
		ms = f.Duration.Milliseconds()
	}
	return diag.Record{
		Category:      diag.FileUploadOperations,
		OperationName: f.Operation,
		Level:         diag.LevelError,
		Err:           f.Err,
		CorrelationID: f.CorrelationID,
		DurationMs:    ms,
		Properties:    props,
	}
}
