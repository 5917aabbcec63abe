package engine

import "context"

// Flush waits until the NATS server has processed everything this node sent before, its new
// subscriptions included. After it, a request from another node connected to the same server
// finds those subscriptions; with a cluster of servers, interest still takes a moment to reach
// the other servers.
func (e *Engine) Flush(ctx context.Context) error {
	return e.nc.FlushWithContext(ctx)
}
