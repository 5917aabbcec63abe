package telemetry

import (
	"time"
)

// Message is one device-to-cloud message: what the device sent, what the hub stamped on it at
// ingest, and, once read back, where it is stored.
type Message struct {
	DeviceID, ModuleID string
	Body               []byte

	// System properties the device may set (MQTT $.mid, $.cid, ...; HTTPS iothub-* headers).
	// ComponentName is IoT Plug and Play's dt-subject.
	MessageID, CorrelationID, UserID, To, ContentType, ContentEncoding string
	OutputName, InterfaceID, ComponentName, MessageSchema              string
	// CreationTime and Expiry are zero when absent.
	CreationTime, Expiry time.Time

	// Properties are the application properties, in the order received. Names may repeat.
	Properties []Property

	// Set by the hub at ingest.

	// AuthMethod is the iothub-connection-auth-method annotation (a JSON string).
	AuthMethod string
	// AuthGenerationID is the iothub-connection-auth-generation-id annotation.
	AuthGenerationID string
	// Protocol is "Mqtt", "MqttWs", "Https" or "Amqp": not an IoT Hub annotation, kept for
	// diagnostics.
	Protocol string
	// EnqueuedTime is when the hub accepted the message; [Pipeline.SendAsync] sets it if zero.
	EnqueuedTime time.Time

	// Partition is the partition the message is stored in. SendAsync sets it; a reader sets it.
	Partition int
	// SequenceNumber is the message's position in its partition, from 1, contiguous. Set when
	// read back.
	SequenceNumber uint64
}

// Property is one application property.
type Property struct{ Name, Value string }

// MaxMessageSize is IoT Hub's limit for a device-to-cloud message, in bytes, as counted by
// [Size].
const MaxMessageSize = 256 * 1024

// timeSize is what a date-time system property counts toward [Size]: its ISO 8601 text,
// "2006-01-02T15:04:05.000Z".
const timeSize = 24

// Size returns a message's size as IoT Hub counts it against [MaxMessageSize]: the body, the
// values of the system properties the device set, and the names and values of the application
// properties. Annotations the hub adds do not count.
func Size(m *Message) int {
	n := len(m.Body) +
		len(m.MessageID) + len(m.CorrelationID) + len(m.UserID) + len(m.To) +
		len(m.ContentType) + len(m.ContentEncoding) +
		len(m.OutputName) + len(m.InterfaceID) + len(m.ComponentName) + len(m.MessageSchema)
	if !m.CreationTime.IsZero() {
		n += timeSize
	}
	if !m.Expiry.IsZero() {
		n += timeSize
	}
	for _, p := range m.Properties {
		n += len(p.Name) + len(p.Value)
	}
	return n
}

// PartitionOf returns the partition that holds deviceID's messages when there are n
// partitions: FNV-1a (32 bit) of the id, modulo n. It must never change: a device's messages
// are in order only within one partition.
func PartitionOf(deviceID string, n int) int {
	if n <= 1 {
		return 0
	}
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(deviceID); i++ {
		h ^= uint32(deviceID[i])
		h *= prime32
	}
	return int(h % uint32(n))
}
