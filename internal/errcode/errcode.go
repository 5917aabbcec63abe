// Package errcode is the IoT Hub error catalog and the one typed error that every Roost
// operation returns at its surface.
//
// A [Code] is IoT Hub's six-digit error code; its first three digits are the HTTP status. An
// [*Error] carries a Code, a message that is safe to show the client, and an optional cause that is
// only logged:
//
//	if dev == nil {
//		return errcode.New(errcode.DeviceNotFound, "device %q is not registered", id)
//	}
//
// Each edge (REST, MQTT, AMQP) maps errors to the wire once, with [As]. [Lookup] and [Find] give
// the catalog entry with the wire name, the name the troubleshooting guide uses, and, for the codes
// a user meets in practice, a symptom, cause and resolution. The guide's failures that have no code
// (DeliveryCountExceeded, MessageExpired, Unauthorized) are [Conditions], found with [FindCondition].
package errcode

import (
	"errors"
	"fmt"
	"strconv"
)

// Code is an IoT Hub error code such as 404001. Its first three digits are the HTTP status.
type Code int

// HTTPStatus returns the HTTP status carried in the code's first three digits, or 500 for a code
// that is not six digits long.
func (c Code) HTTPStatus() int {
	if c < 100000 || c > 999999 {
		return 500
	}
	return int(c) / 1000
}

// String returns the code as six digits.
func (c Code) String() string { return strconv.Itoa(int(c)) }

// Name returns the wire name of a catalogued code (e.g. "DeviceNotFound"), or the generic name
// for its HTTP status when the code is not in the catalog.
func (c Code) Name() string {
	if e, ok := Lookup(c); ok {
		return e.Name
	}
	if e, ok := Lookup(Code(c.HTTPStatus() * 1000)); ok {
		return e.Name
	}
	return "ServerError"
}

// GuideName returns the name the troubleshooting guide and the diagnostic logs use for the code
// (e.g. 401002 is "AuthenticationFailed" there), or [Code.Name] when the guide does not name it.
func (c Code) GuideName() string {
	if e, ok := Lookup(c); ok && e.GuideName != "" {
		return e.GuideName
	}
	return c.Name()
}

// Error is the typed error every Roost operation returns at its API surface.
type Error struct {
	// Code is the six-digit IoT Hub error code.
	Code Code
	// Msg is safe to show the client. It never holds a secret.
	Msg string
	// Err is the underlying cause. It is logged, never sent to the client. It may be nil.
	Err error
}

// New returns an [*Error] with a client-safe message formatted from format and args.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an [*Error] that keeps err as its logged cause.
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Error returns the code, its wire name, the message and, when there is one, the cause. It is meant
// for logs: the cause may hold details that must not reach the client, which gets only Msg.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Code, e.Code.Name(), e.Msg, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Code, e.Code.Name(), e.Msg)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// As returns the [*Error] in err's chain. An error that is not one becomes a 500001 ServerError
// whose cause is err, so that callers always have a code to report.
func As(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: ServerError, Msg: "internal server error", Err: err}
}

// Is reports whether err carries the given code.
func Is(err error, code Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
