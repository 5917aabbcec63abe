package mqtt

import (
	"crypto/tls"
	"errors"
	"net"
)

// An idle device connection is a goroutine blocked reading its socket. Blocked inside
// crypto/tls, that goroutine sits on a stack of 4 KiB or more for as long as the device stays
// quiet, and with tens of thousands of devices the stacks are a large share of the hub's memory.
// A stack that grew is never shrunk back to the minimum while it is in use (the runtime keeps
// at least a quarter of it), so between packets the read loop first asks TLS for a record
// without waiting (the socket underneath returns a temporary "would block" error, which
// crypto/tls passes up without poisoning the connection); when there is none, the goroutine
// hands the connection to a new one, which starts on the minimum stack and waits for the socket
// to become readable in a shallow frame, and ends.
//
// Waiting on the raw socket is only right when TLS holds no complete record of its own: that is
// exactly what the "would block" answer says, since TLS asked the socket for more bytes.

// NewTLSListener is tls.NewListener for the MQTT listener: connections accepted through it can
// wait for their next packet on a small stack (see above). Where the platform lacks the
// non-blocking probe, it is tls.NewListener.
func NewTLSListener(ln net.Listener, cfg *tls.Config) net.Listener {
	if !pollSupported {
		return tls.NewListener(ln, cfg)
	}
	return &pollListener{Listener: ln, cfg: cfg}
}

type pollListener struct {
	net.Listener
	cfg *tls.Config
}

func (l *pollListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		if pc, err := newPollConn(tc); err == nil {
			return tls.Server(pc, l.cfg), nil
		}
	}
	return tls.Server(nc, l.cfg), nil
}

// errWouldBlock is what a pollConn in probing mode returns when the socket has no bytes. It is
// a temporary net.Error, which crypto/tls treats as resumable.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "no data ready" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

var _ net.Error = wouldBlock{}

// errQuiet ends a read loop whose device has sent nothing more for now.
var errQuiet = errors.New("quiet")

// probe returns nil when there are bytes to read (in c.br or in TLS's buffer), errQuiet when
// there are none yet and the connection can wait for them in await, or the read error. For
// connections that cannot probe (WebSockets, other platforms) it returns nil: their next read
// blocks as usual.
func (c *conn) probe() error {
	if c.poll == nil || c.br.r < c.br.w {
		return nil
	}
	c.poll.probing = true
	n, err := c.nc.Read(c.br.buf[:])
	c.poll.probing = false
	if n > 0 {
		c.br.r, c.br.w = 0, n
		return nil // an error with data surfaces on the next read
	}
	if errors.Is(err, errWouldBlock) {
		return errQuiet
	}
	return err // nil: nothing read, the next read blocks as usual
}

// await is the goroutine of a quiet connection: it starts with the smallest stack, waits in a
// shallow frame until the socket is readable, and then serves the connection itself.
func (c *conn) await() {
	defer c.s.wg.Done()
	if err := c.poll.waitReadable(); err != nil {
		c.finish(c.readErr(err))
		c.end()
		return
	}
	c.serve()
}

// pollConnOf returns the probing socket under a TLS connection accepted by NewTLSListener.
func pollConnOf(nc net.Conn) *pollConn {
	if tc, ok := nc.(*tls.Conn); ok {
		if pc, ok := tc.NetConn().(*pollConn); ok {
			return pc
		}
	}
	return nil
}
