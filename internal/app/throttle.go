package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/roost-iot/roost/internal/throttle"
)

// openThrottle makes the hub's tier enforcement from --sku and --units and joins it to the
// other nodes through the engine. With --sku unlimited (the default) h.Throttle stays nil.
func (h *Hub) openThrottle(ctx context.Context, log *slog.Logger) error {
	s := h.Config.Throttle
	groups, err := throttle.ParseDeviceGroups(s.DeviceGroups)
	if err != nil {
		return fmt.Errorf("device-group-limits: %w", err)
	}
	h.deviceLimits, err = throttle.NewDeviceLimits(throttle.DeviceLimitsConfig{
		Default: throttle.DeviceLimit{Sends: s.DeviceMaxSends, Bytes: s.DeviceMaxBytes},
		Groups:  groups, Burst: s.Burst, Backlog: s.Backlog, Twin: h.twinDoc,
	})
	if err != nil {
		return err
	}
	th, err := throttle.New(throttle.Config{SKU: s.SKU, Units: s.Units, Burst: s.Burst, Backlog: s.Backlog, Logger: log})
	if err != nil || th == nil {
		return err
	}
	if err := th.Join(ctx, h.Engine, throttle.JoinConfig{Node: h.NodeID}); err != nil {
		return err
	}
	h.Throttle = th
	h.Metrics.Throttle.SetDailyQuotaSource(func() float64 {
		used, _ := th.QuotaUsed()
		return float64(used)
	})
	log.Info("enforcing an IoT Hub tier", "sku", th.SKU(), "units", s.Units,
		"d2cPerSecond", th.Rate(throttle.D2C), "burst", s.Burst, "backlog", s.Backlog)
	return nil
}

// closeThrottle withdraws this node from the hub's rate shares.
func (h *Hub) closeThrottle() {
	if h.Throttle != nil {
		h.Throttle.Close()
		h.Throttle = nil
	}
}

// twinDoc returns an identity's twin decoded, for the device groups' conditions.
func (h *Hub) twinDoc(ctx context.Context, deviceID, moduleID string) (map[string]any, error) {
	tw, err := h.Twins.Get(ctx, deviceID, moduleID)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(tw)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	err = json.Unmarshal(b, &doc)
	return doc, err
}
