//go:build !linux

package mqtt

import (
	"errors"
	"syscall"
)

// Elsewhere quiet connections block in TLS as they always did.
const waitSupported = false

func waitReadable(syscall.RawConn) error { return errors.ErrUnsupported }
