package errcode

import "strings"

// Condition is a failure the troubleshooting guide describes that has no six-digit code: it shows up
// in C2D feedback, in diagnostic records or in endpoint health rather than as an error response, so
// it is not an [Entry] and has no [Code].
type Condition struct {
	// Name is the name the guide and the diagnostic records use, e.g. "MessageExpired".
	Name string
	// Symptom, Cause and Resolution explain the condition to a user in Roost's own words.
	Symptom    string
	Cause      string
	Resolution string
	// Where says where a user meets the condition: feedback status, log category, endpoint health.
	Where string
}

// Conditions lists the guide's conditions without a code. Their names never clash with a catalog
// name, so a lookup by name is unambiguous across [Find] and [FindCondition].
var Conditions = []Condition{
	{
		Name:  "DeliveryCountExceeded",
		Where: "C2D feedback (statusCode DeliveryCountExceeded) and C2DCommands diagnostic records.",
		Symptom: "A cloud-to-device message is never completed and disappears from the device's queue; a " +
			"sender that asked for feedback receives a DeliveryCountExceeded record for it.",
		Cause: "The message was handed to the device and came back to the queue more times than the " +
			"hub's maxDeliveryCount allows (10 unless configured otherwise), so Roost dead-lettered " +
			"it. Typically the device abandons it again and again, or crashes while handling it.",
		Resolution: "Make the device complete the messages it has handled and reject the ones it cannot " +
			"use, instead of abandoning them. `roost logs query` shows the device id and delivery " +
			"count in the record's properties. Raise maxDeliveryCount (up to 100) only if repeated " +
			"attempts are expected.",
	},
	{
		Name: "MessageExpired",
		Where: "C2DCommands diagnostic records (operationName messageExpired) and C2D feedback " +
			"(statusCode Expired).",
		Symptom: "A cloud-to-device message is dropped without being delivered; the C2DCommands log has " +
			"a messageExpired record, and a sender that asked for feedback receives Expired.",
		Cause: "The message's time to live ran out before the device completed it, most often because " +
			"the device was offline or was not reading its queue. Without an expiry on the message, " +
			"the hub's default time to live applies (one hour unless configured otherwise).",
		Resolution: "Check whether the device was connected during that time (`roost device show <id>` and " +
			"the Connections records in `roost logs query`). For devices that are often offline, " +
			"give messages a longer expiry (up to two days) or send the setting as a desired twin " +
			"property, which waits for the device.",
	},
	{
		Name: "Unauthorized",
		Where: "Routes diagnostic records (resultType 401) and endpoint health (lastKnownError " +
			"Unauthorized); C2DCommands and DeviceTelemetry records for a sender or reader without " +
			"rights.",
		Symptom: "Messages stop reaching a routing endpoint, or a service client that sends " +
			"cloud-to-device messages or reads telemetry is refused, with Unauthorized and no " +
			"six-digit code.",
		Cause: "A credential on one side of the exchange is not accepted: the endpoint's connection " +
			"string or key was rotated or revoked, or the service client's shared access policy " +
			"lacks the permission its work needs (ServiceConnect for sending cloud-to-device " +
			"messages and reading feedback or telemetry).",
		Resolution: "Update the endpoint's credentials, or give the client a policy with the right " +
			"permission (`roost connection-string` prints the iothubowner string). Then watch " +
			"`roost logs query` to confirm that no new Unauthorized records appear.",
	},
}

// FindCondition returns the condition named s, case-insensitively ("messageexpired").
//
// Conditions are kept apart from [Find] on purpose: a pseudo-entry with Code 0 would report HTTP
// status 500 and would let code that maps a wire name to a Code (a parsed iothub-errorcode header,
// a resultDescription) pick up something that is not an error code at all.
func FindCondition(s string) (Condition, bool) {
	s = strings.TrimSpace(s)
	for _, c := range Conditions {
		if strings.EqualFold(c.Name, s) {
			return c, true
		}
	}
	return Condition{}, false
}
