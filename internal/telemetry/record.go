package telemetry

import (
	"strconv"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
)

// IngressFailure describes a device message the hub refused or could not store. Every device
// edge (MQTT, HTTPS) turns it into the same DeviceTelemetry record.
type IngressFailure struct {
	DeviceID, ModuleID string
	// Protocol is "Mqtt", "MqttWs", "Https" or "Amqp".
	Protocol string
	// AuthType is the identity's authType JSON (auth.Identity.AuthTypeJSON); empty when the
	// device was not authenticated.
	AuthType string
	// MaskedIP is the device's address as diag.MaskIP gives it.
	MaskedIP string
	// Size is the message's size in bytes as [Size] counts it (or the request body's).
	Size int
	// Batch is set for a batch of messages (HTTPS).
	Batch bool
	// CorrelationID ties the record to the tracking id the device was given, if any.
	CorrelationID string
	Err           error
}

// Record returns the DeviceTelemetry "ingress" record IoT Hub writes for a refused message:
// level Error, the code as resultType, and properties deviceId, protocol, authType,
// messageSizeInBytes, statusCode (strings, as IoT Hub writes them).
func (f IngressFailure) Record() diag.Record {
	var authType any // null when unauthenticated, as in IoT Hub's records
	if f.AuthType != "" {
		authType = f.AuthType
	}
	status := 500
	if e := errcode.As(f.Err); e != nil {
		status = e.Code.HTTPStatus()
	}
	batching := "0"
	if f.Batch {
		batching = "1"
	}
	props := map[string]any{
		"deviceId":           f.DeviceID,
		"protocol":           f.Protocol,
		"authType":           authType,
		"messageSizeInBytes": strconv.Itoa(f.Size),
		"batching":           batching,
		"statusCode":         strconv.Itoa(status),
	}
	if f.ModuleID != "" {
		props["moduleId"] = f.ModuleID
	}
	if f.MaskedIP != "" {
		props["maskedIpAddress"] = f.MaskedIP
	}
	return diag.Record{
		Category:      diag.DeviceTelemetry,
		OperationName: "ingress",
		Level:         diag.LevelError,
		Err:           f.Err,
		CorrelationID: f.CorrelationID,
		DurationMs:    -1,
		Properties:    props,
	}
}
