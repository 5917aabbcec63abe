package app

import (
	"context"

	"github.com/roost-iot/roost/internal/regjobs"
)

// openRegJobs starts the import/export jobs service (POST /jobs/create). Its container URIs may
// name the built-in blob store, which it then reads and writes directly.
func (h *Hub) openRegJobs(ctx context.Context) error {
	svc, err := regjobs.New(ctx, regjobs.Config{Engine: h.Engine, Registry: h.Registry, Twins: h.Twins, Blobs: h.Blobs,
		NodeID: h.NodeID, Logger: h.log})
	if err != nil {
		return err
	}
	h.RegJobs = svc
	return nil
}

// closeRegJobs stops this node's import/export runner; a job it was running is taken over by
// another node when its lease runs out.
func (h *Hub) closeRegJobs() {
	if h.RegJobs != nil {
		h.RegJobs.Close()
		h.RegJobs = nil
	}
}
