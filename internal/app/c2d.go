package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/roost-iot/roost/internal/c2d"
)

// openC2D starts the node's cloud-to-device messaging: the queues, sessions for the devices
// this node holds, expiry and feedback.
func (h *Hub) openC2D(ctx context.Context, log *slog.Logger) error {
	s := h.Config.C2D
	svc, err := c2d.Open(ctx, h.Engine, c2d.Config{
		Registry: h.Registry, Diag: h.Diag, Metrics: h.Metrics, Logger: log,
		DefaultTTL: s.DefaultTTL, MaxDeliveryCount: s.MaxDeliveryCount,
		FeedbackTTL: s.FeedbackTTL, FeedbackLock: s.FeedbackLock, FeedbackMaxDeliveryCount: s.FeedbackMaxDeliveryCount,
	})
	if err != nil {
		return err
	}
	h.C2D = svc
	return nil
}

// closeC2D stops it; the MQTT server, whose sessions it serves, must be shut down first.
func (h *Hub) closeC2D() {
	if h.C2D != nil {
		h.C2D.Close()
		h.C2D = nil
	}
}

// queueDepth is the registry's cloudToDeviceMessageCount of a device.
func (h *Hub) queueDepth(ctx context.Context, deviceID string) int {
	if h.C2D == nil {
		return 0
	}
	n, err := h.C2D.Depth(ctx, deviceID)
	if err != nil {
		return 0
	}
	return n
}

// dropC2D forgets a deleted device's queue and pending feedback.
func (h *Hub) dropC2D(deviceID string) {
	if h.C2D == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.C2D.DropDevice(ctx, deviceID)
}
