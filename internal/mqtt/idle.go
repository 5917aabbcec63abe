package mqtt

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// An idle device connection is a goroutine blocked reading its socket. Blocked inside
// crypto/tls, that goroutine sits on the 4 KiB or more of stack the TLS read path grew, for as
// long as the device stays quiet, and the runtime never shrinks a stack below four times what
// is in use; with tens of thousands of devices those stacks are a large share of the hub's
// memory. So a read loop waits for a device's next packet inside TLS for at most quietAfter;
// when that passes with nothing read (a deadline error, which crypto/tls treats as temporary:
// the connection stays usable), the goroutine hands the connection to a new one, which starts
// on the minimum stack, waits in a shallow frame until the socket is readable, and then serves
// the connection itself. Busy connections never hand over, so they pay nothing for this.
//
// Waiting on the raw socket is right only when TLS holds no complete record of its own, which
// is what the timed-out read says: TLS was waiting for the socket.

// quietAfter is how long a read loop waits for the next packet before handing over.
const quietAfter = 2 * time.Second

// errQuiet ends a read loop whose device has sent nothing for quietAfter.
var errQuiet = errors.New("quiet")

// rawSocket returns the socket under a TLS connection, for waiting on it, or nil where that is
// not possible (WebSockets, other platforms): those connections block in TLS as before.
func rawSocket(nc net.Conn) syscall.RawConn {
	if !waitSupported {
		return nil
	}
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return nil
	}
	sc, ok := tc.NetConn().(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// armDeadline starts a new keep-alive window after a packet. On a connection that can wait
// quietly the socket's read deadline is the earlier of the window's end and quietAfter from
// now: reaching it between packets means the device is quiet (nextPacket), reaching it inside
// a packet just extends it to the window's end (packetReader). One deadline per packet, as
// without any of this.
func (c *conn) armDeadline() {
	now := time.Now()
	c.kaDeadline = now.Add(c.kaWindow)
	d := c.kaDeadline
	if c.raw != nil && c.kaWindow > quietAfter {
		d = now.Add(quietAfter)
	}
	_ = c.nc.SetReadDeadline(d)
}

// nextPacket makes sure the start of the next packet can be read: it returns nil once bytes
// are there (in c.br or TLS's buffer), errQuiet when the device has been quiet until the short
// deadline armDeadline set and the connection can wait in await, or the classified read error.
func (c *conn) nextPacket() error {
	if c.raw == nil || c.br.r < c.br.w {
		return nil
	}
	n, err := c.nc.Read(c.br.buf[:])
	if n > 0 {
		c.br.r, c.br.w = 0, n
		return nil // an error with data surfaces on the next read
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(c.kaDeadline) {
		_ = c.nc.SetReadDeadline(c.kaDeadline) // what await waits under
		return errQuiet
	}
	return c.readErr(err)
}

// packetReader reads the rest of a packet: a short deadline (armDeadline) that passes inside
// a packet is moved to the keep-alive window's end and the read goes on; TLS keeps what it had.
type packetReader struct{ c *conn }

func (r packetReader) Read(p []byte) (int, error) {
	c := r.c
	n, err := c.nc.Read(p)
	if n == 0 && err != nil && c.raw != nil && errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(c.kaDeadline) {
		_ = c.nc.SetReadDeadline(c.kaDeadline)
		return c.nc.Read(p)
	}
	return n, err
}

// await is the goroutine of a quiet connection: it starts with the smallest stack, waits in a
// shallow frame until the socket is readable (or the keep-alive deadline passes, or the
// connection is closed), and then serves the connection itself.
func (c *conn) await() {
	defer c.s.wg.Done()
	if err := waitReadable(c.raw); err != nil {
		c.finish(c.readErr(err))
		c.end()
		return
	}
	c.serve()
}
