//go:build !unix

package bench

import "time"

// cpuTime is not measured on this platform; phases then report a client CPU of 0.
func cpuTime() time.Duration { return 0 }
