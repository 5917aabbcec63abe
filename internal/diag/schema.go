package diag

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Operation names, per category. IoT Hub documents one or two names per category; the others
// are Roost's, chosen in the same style (camelCase verbs), and marked so in [Categories].
const (
	// Connections.
	OpDeviceConnect    = "deviceConnect"
	OpDeviceDisconnect = "deviceDisconnect"

	// DeviceTelemetry, FileUploadOperations: errors on the way in.
	OpIngress = "ingress"

	// C2DCommands.
	OpMessageExpired        = "messageExpired"
	OpDeliveryCountExceeded = "deliveryCountExceeded"
	OpMessageRejected       = "messageRejected"
	OpC2DSend               = "send"
	OpC2DReceive            = "receive"
	OpC2DComplete           = "complete"
	OpC2DAbandon            = "abandon"
	OpC2DReject             = "reject"
	OpC2DPurge              = "purge"
	OpFeedbackExpired       = "feedbackExpired"

	// DeviceIdentityOperations (the REST route names of the registry).
	OpCreate        = "create"
	OpGet           = "get"
	OpUpdate        = "update"
	OpDelete        = "delete"
	OpList          = "list"
	OpBulk          = "bulk"
	OpGetStatistics = "getStatistics"

	// FileUploadOperations besides ingress (which IoT Hub documents for a SAS that expired before
	// the device notified completion).
	OpUploadInitiate     = "initiate"     // POST /devices/{id}/files
	OpUploadNotify       = "notify"       // the device's completion notification
	OpUploadWrite        = "upload"       // a write to the built-in blob endpoint
	OpUploadRead         = "read"         // a read of the blob endpoint or of /files
	OpUploadNotification = "notification" // the service side's file notification queue

	// Routes (IoT Hub spells the emitted names in camelCase).
	OpUndefinedRouteEvaluation = "undefinedRouteEvaluation"
	OpRouteEvaluationError     = "routeEvaluationError"
	OpDroppedMessage           = "droppedMessage"
	OpEndpointDead             = "endpointDead"
	OpEndpointUnhealthy        = "endpointUnhealthy"
	OpOrphanedMessage          = "orphanedMessage"
	OpEndpointHealthy          = "endpointHealthy"
	OpInvalidMessage           = "invalidMessage"

	// D2CTwinOperations and C2DTwinOperations.
	OpTwinRead      = "read"
	OpTwinUpdate    = "update"
	OpTwinReplace   = "replace"
	OpTwinSubscribe = "subscribe"

	// TwinQueries.
	OpQuery = "query"

	// JobsOperations.
	OpJobCreate    = "jobCreate"
	OpJobCancel    = "jobCancel"
	OpJobCompleted = "jobCompleted"
	OpJobFailed    = "jobFailed"
	OpJobRead      = "jobRead"
	OpJobQuery     = "jobQuery"

	// DirectMethods.
	OpMethodSend = "send"

	// DistributedTracing.
	OpTraceD2C     = "DiagnosticIoTHubD2C"
	OpTraceIngress = "DiagnosticIoTHubIngress"
	OpTraceEgress  = "DiagnosticIoTHubEgress"

	// Configurations.
	OpReadManyConfigurations = "ReadManyConfigurations"
	OpCreateConfiguration    = "CreateConfiguration"
	OpUpdateConfiguration    = "UpdateConfiguration"
	OpDeleteConfiguration    = "DeleteConfiguration"
	OpReadConfiguration      = "ReadConfiguration"
	OpApplyConfiguration     = "ApplyConfigurationContent"

	// DeviceStreams.
	OpStreamInvoke = "invoke"
)

// Operation is one operation name of a category.
type Operation struct {
	Name string
	// Documented is true for the names IoT Hub's documents show; the others are Roost's.
	Documented bool
	// Level is the level a successful record has (failures are always Error). Empty means the
	// category writes failures only.
	Level string
}

// Category is one resource-log category: its name, the operations it logs and the keys of its
// properties bag.
type Category struct {
	Name string
	// Display is the name the Azure portal shows for it.
	Display string
	// Description says what the category records.
	Description string
	// ErrorsOnly is true when IoT Hub logs only failures in the category.
	ErrorsOnly bool
	Operations []Operation
	// Properties are the keys the properties bag carries, in IoT Hub's spelling.
	Properties []string
}

func ops(level string, documented []string, ours ...string) []Operation {
	var out []Operation
	for _, n := range documented {
		out = append(out, Operation{Name: n, Documented: true, Level: level})
	}
	for _, n := range ours {
		out = append(out, Operation{Name: n, Level: level})
	}
	return out
}

// categories is the one definition of every category's shape (spec/diagnostics.md §1.3).
var categories = []Category{
	{
		Name: Connections, Display: "Connections",
		Description: "Device connects and disconnects, and connection errors.",
		Operations:  ops(LevelInformation, []string{OpDeviceConnect, OpDeviceDisconnect}),
		Properties:  []string{"deviceId", "moduleId", "sdkVersion", "protocol", "authType", "maskedIpAddress", "statusCode"},
	},
	{
		Name: DeviceTelemetry, Display: "Device Telemetry", ErrorsOnly: true,
		Description: "Errors on the device-to-cloud telemetry path (refused or unstored messages, throttling).",
		Operations:  ops("", []string{OpIngress}),
		Properties: []string{"deviceId", "moduleId", "batching", "messageSizeInBytes", "EventProcessedUtcTime",
			"EventEnqueuedUtcTime", "partitionId", "protocol", "authType", "maskedIpAddress", "statusCode"},
	},
	{
		Name: C2DCommands, Display: "C2D Commands", ErrorsOnly: true,
		Description: "Errors sending, delivering and settling cloud-to-device messages, and expiries.",
		Operations: ops("", []string{OpMessageExpired}, OpDeliveryCountExceeded, OpMessageRejected, OpC2DSend,
			OpC2DReceive, OpC2DComplete, OpC2DAbandon, OpC2DReject, OpC2DPurge, OpFeedbackExpired),
		Properties: []string{"deviceId", "messageId", "messageSizeInBytes", "protocol", "deliveryAcknowledgement",
			"deliveryCount", "expiryTime", "timeInSystem", "ttl", "EventProcessedUtcTime", "EventEnqueuedUtcTime",
			"maskedIpAddress", "statusCode"},
	},
	{
		Name: DeviceIdentityOperations, Display: "Device Identity Operations", ErrorsOnly: true,
		Description: "Errors creating, reading, updating and deleting identities in the registry.",
		Operations:  ops("", []string{OpGet, OpCreate}, OpUpdate, OpDelete, OpList, OpBulk, OpGetStatistics),
		Properties:  []string{"maskedIpAddress", "deviceId", "moduleId", "statusCode", "sdkVersion", "sharedAccessPolicy"},
	},
	{
		Name: FileUploadOperations, Display: "File Upload Operations", ErrorsOnly: true,
		Description: "Errors of file uploads: SAS URIs, completion notices, missing files.",
		Operations:  ops("", []string{OpIngress}, OpUploadInitiate, OpUploadNotify, OpUploadWrite, OpUploadRead, OpUploadNotification),
		Properties:  []string{"deviceId", "protocol", "authType", "blobUri", "maskedIpAddress", "statusCode"},
	},
	{
		Name: Routes, Display: "Routes",
		Description: "Route evaluation errors and endpoint health.",
		Operations: append(ops(LevelError, []string{OpEndpointDead, OpEndpointUnhealthy}, OpRouteEvaluationError,
			OpDroppedMessage, OpInvalidMessage),
			ops(LevelInformation, nil, OpUndefinedRouteEvaluation, OpOrphanedMessage, OpEndpointHealthy)...),
		Properties: []string{"deviceId", "endpointName", "messageId", "details", "routeName", "statusCode"},
	},
	{
		Name: D2CTwinOperations, Display: "D2CTwinOperations",
		Description: "Device-initiated twin operations: get the twin, update reported properties, subscribe to desired ones.",
		Operations:  ops(LevelInformation, []string{OpTwinUpdate}, OpTwinRead, OpTwinSubscribe),
		Properties:  []string{"deviceId", "moduleId", "protocol", "authenticationType", "sdkVersion", "maskedIpAddress", "statusCode"},
	},
	{
		Name: C2DTwinOperations, Display: "C2D Twin Operations",
		Description: "Service-initiated twin operations: read, update or replace tags and desired properties.",
		Operations:  ops(LevelInformation, []string{OpTwinRead}, OpTwinUpdate, OpTwinReplace),
		Properties:  []string{"deviceId", "moduleId", "sdkVersion", "messageSize", "maskedIpAddress", "statusCode"},
	},
	{
		Name: TwinQueries, Display: "Twin Queries",
		Description: "Twin queries from the service.",
		Operations:  ops(LevelInformation, []string{OpQuery}),
		Properties:  []string{"query", "sdkVersion", "messageSize", "pageSize", "continuation", "resultSize", "maskedIpAddress", "statusCode"},
	},
	{
		Name: JobsOperations, Display: "Jobs Operations",
		Description: "Jobs that update twins or invoke methods on many devices.",
		Operations:  ops(LevelInformation, []string{OpJobCompleted}, OpJobCreate, OpJobCancel, OpJobFailed, OpJobRead, OpJobQuery),
		Properties:  []string{"jobId", "sdkVersion", "messageSize", "filter", "startTimeUtc", "duration"},
	},
	{
		Name: DirectMethods, Display: "Direct Methods",
		Description: "Direct method calls from the service to devices.",
		Operations:  ops(LevelInformation, []string{OpMethodSend}),
		Properties:  []string{"deviceId", "moduleId", "methodName", "RequestSize", "ResponseSize", "sdkVersion", "maskedIpAddress", "statusCode"},
	},
	{
		Name: DistributedTracing, Display: "Distributed Tracing (Preview)",
		Description: "Messages carrying a W3C trace context, at each hop.",
		Operations:  ops(LevelInformation, []string{OpTraceD2C, OpTraceIngress, OpTraceEgress}),
		Properties: []string{"messageSize", "deviceId", "callerLocalTimeUtc", "calleeLocalTimeUtc", "isRoutingEnabled",
			"parentSpanId", "endpointType", "endpointName"},
	},
	{
		Name: Configurations, Display: "Configurations",
		Description: "Automatic device management: configurations and edge deployments.",
		Operations: ops(LevelInformation, []string{OpReadManyConfigurations}, OpCreateConfiguration, OpUpdateConfiguration,
			OpDeleteConfiguration, OpReadConfiguration, OpApplyConfiguration),
		Properties: []string{"configurationId", "sdkVersion", "messageSize", "statusCode"},
	},
	{
		Name: DeviceStreams, Display: "Device Streams (Preview)",
		Description: "Device stream requests and responses.",
		Operations:  ops(LevelInformation, []string{OpStreamInvoke}),
		Properties:  []string{"deviceId", "moduleId", "sdkVersion", "requestSize", "responseSize", "statusCode", "requestName", "direction"},
	},
}

// Categories returns every category's definition, in IoT Hub's order.
func Categories() []Category { return slices.Clone(categories) }

// LookupCategory returns a category by its exact name.
func LookupCategory(name string) (Category, bool) {
	for _, c := range categories {
		if c.Name == name {
			return c, true
		}
	}
	return Category{}, false
}

// FindCategory returns a category by name without regard to case.
func FindCategory(name string) (Category, bool) {
	for _, c := range categories {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return Category{}, false
}

// Operation returns the category's operation of that name.
func (c Category) Operation(name string) (Operation, bool) {
	for _, op := range c.Operations {
		if op.Name == name {
			return op, true
		}
	}
	return Operation{}, false
}

// Check reports how a stored record departs from its category's shape: an unknown category or
// operation, a bad level, a properties bag that is not a JSON object or has keys the category
// does not define. Emitters' tests use it to keep records in IoT Hub's shape.
func Check(w Wire) error {
	c, ok := LookupCategory(w.Category)
	if !ok {
		return fmt.Errorf("unknown category %q", w.Category)
	}
	if _, ok := c.Operation(w.OperationName); !ok {
		return fmt.Errorf("%s has no operation %q", c.Name, w.OperationName)
	}
	switch w.Level {
	case LevelError:
		if c.Name != DistributedTracing && w.ResultType == "" {
			return fmt.Errorf("%s %s: an Error record needs a resultType", c.Name, w.OperationName)
		}
	case LevelInformation:
		// IoT Hub writes some categories for failures only; Roost may also log successes
		// there (the REST API logs every request), so Information is accepted everywhere.
	default:
		return fmt.Errorf("level %q is not Information or Error", w.Level)
	}
	var props map[string]any
	if err := json.Unmarshal([]byte(w.Properties), &props); err != nil {
		return fmt.Errorf("properties is not a JSON object: %v", err)
	}
	for k := range props {
		if !slices.Contains(c.Properties, k) && !slices.Contains(commonProperties, k) {
			return fmt.Errorf("%s records have no property %q (allowed: %s)", c.Name, k, strings.Join(c.Properties, ", "))
		}
	}
	return nil
}

// commonProperties may appear in any category: fault injection marks and the correlation of a
// request Roost logs across categories.
var commonProperties = []string{PropFaultInjected, PropFaultRule, "sdkVersion", "maskedIpAddress", "statusCode", "moduleId"}

// Properties every category may carry.
const (
	// PropFaultInjected is "true" on a record of a failure that fault injection caused.
	PropFaultInjected = "faultInjected"
	// PropFaultRule names the fault injection rule that caused it.
	PropFaultRule = "faultRule"
)
