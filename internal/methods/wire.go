package methods

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// Subjects a direct method uses between nodes.
const (
	// Kind is the engine.DeviceSubject kind a connection listens on for calls.
	Kind = "method"
	// readyKind is the kind a connection announces on when its device subscribes to methods.
	readyKind = "methodready"
)

// Subject is where calls for an identity are sent; the connection holding it listens there.
func Subject(deviceID, moduleID string) string {
	return engine.DeviceSubject(deviceID, moduleID, Kind)
}

// ReadySubject is where a connection announces that its device can now take calls, so that
// calls waiting for the device (connectTimeoutInSeconds) try again at once.
func ReadySubject(deviceID, moduleID string) string {
	return engine.DeviceSubject(deviceID, moduleID, readyKind)
}

// The messages between the invoking node and the node holding the connection are small binary
// envelopes, so a payload travels as the bytes the caller and the device wrote:
//
//	request:  0x01 | timeout ms (uint32) | name length (uint16) | name | payload
//	response: 0x01 | 0x00 | status (int32) | payload
//	error:    0x01 | 0x01 | code (uint32) | message
const wireVersion = 1

const (
	replyResponse = 0
	replyError    = 1
)

// errBadEnvelope means bytes from another node are not a method envelope of this version.
var errBadEnvelope = errors.New("methods: malformed envelope")

// Request is a call as the node holding the device's connection receives it.
type Request struct {
	Name string
	// Payload is the JSON for the device; never empty ("null" when the caller sent none).
	Payload []byte
	// Timeout is how long the caller waits for the answer; after that the connection may forget
	// the call.
	Timeout time.Duration
}

// appendRequest encodes a request.
func appendRequest(dst []byte, name string, payload []byte, timeout time.Duration) []byte {
	if len(payload) == 0 {
		payload = null
	}
	ms := timeout.Milliseconds()
	if ms > 1<<32-1 {
		ms = 1<<32 - 1
	}
	dst = append(dst, wireVersion)
	dst = binary.BigEndian.AppendUint32(dst, uint32(ms))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(name)))
	dst = append(dst, name...)
	return append(dst, payload...)
}

var null = []byte("null")

// DecodeRequest decodes a call sent by [Service.Invoke]. The payload aliases b.
func DecodeRequest(b []byte) (Request, error) {
	if len(b) < 7 || b[0] != wireVersion {
		return Request{}, errBadEnvelope
	}
	ms := binary.BigEndian.Uint32(b[1:5])
	n := int(binary.BigEndian.Uint16(b[5:7]))
	if len(b) < 7+n {
		return Request{}, errBadEnvelope
	}
	r := Request{Name: string(b[7 : 7+n]), Payload: b[7+n:], Timeout: time.Duration(ms) * time.Millisecond}
	if len(r.Payload) == 0 {
		r.Payload = null
	}
	return r, nil
}

// AppendResponse encodes the device's answer: its status and its body, unchanged.
func AppendResponse(dst []byte, status int32, body []byte) []byte {
	dst = append(dst, wireVersion, replyResponse)
	dst = binary.BigEndian.AppendUint32(dst, uint32(status))
	return append(dst, body...)
}

// AppendError encodes why a call could not be delivered or answered, for the caller to return.
// A [errcode.DeviceNotOnline] error makes a caller with a connect timeout try again.
func AppendError(dst []byte, code errcode.Code, msg string) []byte {
	dst = append(dst, wireVersion, replyError)
	dst = binary.BigEndian.AppendUint32(dst, uint32(code))
	return append(dst, msg...)
}

// decodeReply decodes an answer. A remote error comes back as an [*errcode.Error]; a malformed
// envelope as errBadEnvelope. The body aliases b.
func decodeReply(b []byte) (status int32, body []byte, err error) {
	if len(b) < 6 || b[0] != wireVersion {
		return 0, nil, errBadEnvelope
	}
	v := binary.BigEndian.Uint32(b[2:6])
	switch b[1] {
	case replyResponse:
		return int32(v), b[6:], nil
	case replyError:
		code := errcode.Code(v)
		if code < 400000 || code > 599999 {
			return 0, nil, errBadEnvelope
		}
		return 0, nil, &errcode.Error{Code: code, Msg: string(b[6:])}
	}
	return 0, nil, errBadEnvelope
}
