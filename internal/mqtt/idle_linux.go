package mqtt

import "syscall"

const waitSupported = true

// waitReadable parks until the socket has bytes, an end of stream or an error to read, the read
// deadline passes or the connection is closed. The check is a peek made after the runtime armed
// its readiness notification, so bytes that arrive in between are not missed.
func waitReadable(rc syscall.RawConn) error {
	return rc.Read(func(fd uintptr) bool {
		var one [1]byte
		_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EINTR
	})
}
