// Package c2d is the hub's cloud-to-device messaging with IoT Hub's semantics: a queue of at most
// 50 messages per device, a one-minute lock per delivery, a maximum delivery count, expiry, and
// feedback to the sender (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-c2d).
//
//	svc, err := c2d.Open(ctx, eng, c2d.Config{Registry: reg})
//	m, err := svc.Send(ctx, "thermostat-1", c2d.Message{Body: []byte("on"), Ack: c2d.AckFull})
//
// A device reads its queue in one of two ways. Over HTTPS it polls: [Service.Receive] locks the
// oldest available message and returns a lock token that [Service.Complete], [Service.Reject] and
// [Service.Abandon] name. Over a connection (MQTT) the node holding the connection opens a
// [Session], which pushes messages to the connection as they arrive and completes them when the
// device acknowledges.
//
// Nothing durable lives on a node (DESIGN.md's cluster rule). The engine holds the queues (a
// LimitsPolicy stream, one subject per device, capped at 50), the delivery counts and locks (a
// key-value bucket, compare-and-set), one expiry timer per device with messages waiting (message
// schedules, fired on one node), and the feedback (a stream read through one shared durable
// consumer). There is no JetStream consumer per device (spec/engine-notes.md §3, §6): a session
// reads its device's subject by direct get and learns about new messages from the engine's
// announcement on the device's subject. A device whose queue is empty costs nothing anywhere; a
// connected device costs its node one small session.
//
// Errors are [*errcode.Error] values with IoT Hub's codes: 404001 unknown or disabled device,
// 403004 full queue, 413001 too large, 400004 bad properties, 403009 bad expiry, 412002 lock lost.
package c2d
