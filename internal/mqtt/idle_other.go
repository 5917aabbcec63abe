//go:build !linux

package mqtt

import (
	"errors"
	"net"
)

const pollSupported = false

// pollConn exists only on Linux; elsewhere idle connections block in TLS as usual.
type pollConn struct {
	*net.TCPConn
	probing bool
}

func newPollConn(*net.TCPConn) (*pollConn, error) { return nil, errors.ErrUnsupported }

func (p *pollConn) waitReadable() error { return errors.ErrUnsupported }
