package app

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"text/tabwriter"

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
	if err := h.deviceLimits.Join(ctx, h.Engine, throttle.JoinConfig{Node: h.NodeID}); err != nil {
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

// closeThrottle withdraws this node from the hub's rate shares and the device groups' totals.
func (h *Hub) closeThrottle() {
	h.deviceLimits.Close()
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

// throttleStatus is what GET /throttle on the admin listener answers and roost throttle prints:
// the tier, each class's hub-wide rate and this node's share of it, and the day's quota.
type throttleStatus struct {
	SKU        string          `json:"sku"`
	Units      int             `json:"units,omitempty"`
	Node       string          `json:"node"`
	Classes    []classStatus   `json:"classes,omitempty"`
	QuotaUsed  int64           `json:"dailyMessageQuotaUsed"`
	QuotaLimit int64           `json:"dailyMessageQuota,omitempty"`
	Device     *deviceCapsJSON `json:"deviceCaps,omitempty"`
}

type classStatus struct {
	Class string  `json:"class"`
	Rate  float64 `json:"ratePerSecond"`
	Share float64 `json:"nodeShare"`
}

type deviceCapsJSON struct {
	Sends  float64 `json:"sendsPerSecond,omitempty"`
	Bytes  float64 `json:"bytesPerSecond,omitempty"`
	Groups string  `json:"groups,omitempty"`
}

func (h *Hub) throttleStatus() throttleStatus {
	s := h.Config.Throttle
	st := throttleStatus{SKU: h.Throttle.SKU(), Node: h.NodeID}
	if h.Throttle != nil {
		st.Units = s.Units
		for _, c := range throttle.Classes() {
			st.Classes = append(st.Classes, classStatus{Class: c.String(), Rate: h.Throttle.Rate(c), Share: h.Throttle.Share(c)})
		}
		st.QuotaUsed, st.QuotaLimit = h.Throttle.QuotaUsed()
	}
	if h.deviceLimits != nil {
		st.Device = &deviceCapsJSON{Sends: s.DeviceMaxSends, Bytes: s.DeviceMaxBytes, Groups: s.DeviceGroups}
	}
	return st
}

func (h *Hub) serveThrottleStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(h.throttleStatus())
}

// runThrottle prints the tier a running hub enforces.
func runThrottle(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var af adminFlags
	fs := newFlagSet("throttle", stderr, "roost throttle [--output json]")
	af.register(fs)
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	ad, err := af.admin()
	if err != nil {
		return fail(stderr, "throttle", err)
	}
	var st throttleStatus
	if err := ad.Do(ctx, "GET", "/throttle", nil, &st); err != nil {
		return fail(stderr, "throttle", err)
	}
	if af.output == "json" {
		printJSON(stdout, st)
		return 0
	}
	if len(st.Classes) == 0 {
		fmt.Fprintln(stdout, "SKU unlimited: no throttles and no daily quota (start with --sku S1 ... to enforce a tier)")
	} else {
		fmt.Fprintf(stdout, "SKU %s, %d unit(s); node %s\n\n", st.SKU, st.Units, st.Node)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CLASS\tHUB RATE/S\tTHIS NODE'S SHARE")
		for _, c := range st.Classes {
			fmt.Fprintf(tw, "%s\t%s\t%.0f%%\n", c.Class, strconv.FormatFloat(c.Rate, 'f', 2, 64), c.Share*100)
		}
		_ = tw.Flush()
		fmt.Fprintf(stdout, "\nDaily quota: %d of %d messages used (resets at 00:00 UTC)\n", st.QuotaUsed, st.QuotaLimit)
	}
	if d := st.Device; d != nil {
		fmt.Fprintf(stdout, "Per-device caps: %g sends/s, %g bytes/s (0: none); groups: %s\n", d.Sends, d.Bytes, cmp.Or(d.Groups, "none"))
	}
	return 0
}
