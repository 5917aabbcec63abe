// Package methods invokes direct methods on devices and modules, wherever in the cluster their
// connection is, with IoT Hub's rules: the call's shape and limits, the connect and response
// timeouts, and the error codes a caller sees (404103 DeviceNotOnline, 504101 GatewayTimeout).
//
// A call travels as a NATS request to the identity's method subject
// (engine.DeviceSubject(device, module, "method")). Only a connection whose device subscribed to
// direct methods listens there, on whichever node holds it, so "nobody answered the request"
// means the device is offline or has no method handler:
//
//	svc, err := methods.New(methods.Config{Engine: eng, Registry: reg})
//	call, err := methods.DecodeCall(body) // the service API's JSON body
//	call.DeviceID = "thermostat-1"
//	res, err := svc.Invoke(ctx, call)    // res.Status and res.Payload are the device's answer
//
// The node holding the connection decodes the request with [DecodeRequest], hands it to the
// device, and answers the NATS request with [AppendResponse] once the device replies (or with
// [AppendError] when it cannot deliver it). The invoker checks the device's answer (JSON, at most
// [MaxPayload] bytes) and gives the caller the payload exactly as the device sent it.
//
// With a connect timeout, [Service.Invoke] waits for the device: a connection announces on
// [ReadySubject] that its device subscribed to direct methods, and the waiting call tries again
// at once (and, to be safe against a lost announcement, every second).
//
// Nothing here is durable: a direct method is a live exchange between a caller and a connected
// device, so there is nothing to keep in the engine beyond the connections' subscriptions.
package methods
