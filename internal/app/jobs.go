package app

import (
	"context"

	"github.com/roost-iot/roost/internal/jobs"
)

// openJobs starts jobs v2: this node's scheduler, which runs its share of the hub's jobs.
func (h *Hub) openJobs(ctx context.Context) error {
	var err error
	h.Jobs, err = jobs.New(ctx, jobs.Config{
		Engine: h.Engine, Twins: h.Twins, Methods: h.Methods, Devices: h.Twins.Scan,
		Throttle: h.Throttle, Diag: h.Diag, Metrics: h.Metrics, NodeID: h.NodeID,
		MaxActive: h.Config.Jobs.MaxActive, Retention: h.Config.Jobs.Retention, Logger: h.log,
	})
	return err
}

// closeJobs stops the scheduler; the jobs this node runs are released to the other nodes.
func (h *Hub) closeJobs() {
	if h.Jobs != nil {
		h.Jobs.Close()
		h.Jobs = nil
	}
}

// jobRows is the devices.jobs source of queries; nil before the jobs service starts.
func (h *Hub) jobRows() func(ctx context.Context, modules bool, fn func(map[string]any) bool) error {
	if h.Jobs == nil {
		return nil
	}
	return h.Jobs.Rows
}
