package mqtt

import (
	"io"
	"net"
	"os"
	"syscall"
)

const pollSupported = true

// pollConn is a TCP connection whose reads can be made non-blocking (probing) for one call.
// Only the connection's read goroutine sets probing or reads; writes are ordinary.
type pollConn struct {
	*net.TCPConn
	rc      syscall.RawConn
	probing bool
}

func newPollConn(tc *net.TCPConn) (*pollConn, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &pollConn{TCPConn: tc, rc: rc}, nil
}

func (p *pollConn) Read(b []byte) (int, error) {
	if !p.probing || len(b) == 0 {
		return p.TCPConn.Read(b)
	}
	var n int
	var serr error
	// The function returns true at once: the runtime never waits here, and still reports a
	// closed connection or a passed read deadline as a blocking read would.
	if err := p.rc.Read(func(fd uintptr) bool {
		for {
			n, serr = syscall.Read(int(fd), b)
			if serr != syscall.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	switch {
	case serr == syscall.EAGAIN:
		return 0, errWouldBlock
	case serr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: p.LocalAddr(), Addr: p.RemoteAddr(), Err: os.NewSyscallError("read", serr)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// waitReadable parks until the socket has bytes, an end of stream or an error to read, the read
// deadline passes or the connection is closed. The check is a peek made after the runtime armed
// its readiness notification, so bytes that arrive in between are not missed.
func (p *pollConn) waitReadable() error {
	return p.rc.Read(func(fd uintptr) bool {
		var one [1]byte
		_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EINTR
	})
}
