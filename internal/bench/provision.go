package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/roost-iot/roost/internal/client"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

// DeviceKey is a device the load generator registered, with its primary key.
type DeviceKey struct {
	ID  string
	Key string
}

// provisionConcurrency is how many bulk requests ProvisionDevices and DeleteDevices send at once.
const provisionConcurrency = 4

// ProvisionDevices registers n devices with SAS keys it generates, BulkSize per bulk create
// request, named "bench-<runID>-000042" so runs never collide with each other or with real
// devices. It returns the devices that were created; the error is the first failed request or
// entry, after the others have been tried, so the caller can still delete what exists.
func ProvisionDevices(ctx context.Context, c *client.Client, runID string, n int) ([]DeviceKey, error) {
	devs := make([]DeviceKey, n)
	for i := range devs {
		key, err := sas.GenerateKey()
		if err != nil {
			return nil, err
		}
		devs[i] = DeviceKey{ID: fmt.Sprintf("bench-%s-%06d", runID, i), Key: key}
	}
	failed := make([]bool, n)
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	forBatches(n, func(lo, hi int) {
		entries := make([]registry.ImportDevice, 0, hi-lo)
		for _, d := range devs[lo:hi] {
			entries = append(entries, registry.ImportDevice{
				ID: d.ID, ImportMode: registry.ModeCreate,
				Authentication: &registry.Authentication{
					Type:         "sas",
					SymmetricKey: &registry.SymmetricKey{PrimaryKey: d.Key, SecondaryKey: d.Key},
				},
			})
		}
		var res registry.BulkResult
		if _, err := c.Do(ctx, http.MethodPost, "/devices", nil, nil, entries, &res); err != nil {
			for i := lo; i < hi; i++ {
				failed[i] = true
			}
			fail(fmt.Errorf("bulk create: %w", err))
			return
		}
		bad := map[string]bool{}
		for _, e := range res.Errors {
			bad[e.DeviceID] = true
			fail(fmt.Errorf("bulk create %s: %s %s", e.DeviceID, e.ErrorCode, e.ErrorStatus))
		}
		for i := lo; i < hi; i++ {
			failed[i] = bad[devs[i].ID]
		}
	})
	created := devs[:0]
	for i, d := range devs {
		if !failed[i] {
			created = append(created, d)
		}
	}
	return created, firstErr
}

// DeleteDevices deletes devices in bulk and returns the first failure, after trying them all.
func DeleteDevices(ctx context.Context, c *client.Client, devs []DeviceKey) error {
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	forBatches(len(devs), func(lo, hi int) {
		entries := make([]registry.ImportDevice, 0, hi-lo)
		for _, d := range devs[lo:hi] {
			entries = append(entries, registry.ImportDevice{ID: d.ID, ImportMode: registry.ModeDelete})
		}
		var res registry.BulkResult
		if _, err := c.Do(ctx, http.MethodPost, "/devices", nil, nil, entries, &res); err != nil {
			fail(fmt.Errorf("bulk delete: %w", err))
			return
		}
		for _, e := range res.Errors {
			fail(fmt.Errorf("bulk delete %s: %s %s", e.DeviceID, e.ErrorCode, e.ErrorStatus))
		}
	})
	return firstErr
}

// forBatches calls fn for each BulkSize slice [lo, hi) of n items, provisionConcurrency at once.
func forBatches(n int, fn func(lo, hi int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range provisionConcurrency {
		wg.Go(func() {
			for {
				lo := int(next.Add(1)-1) * BulkSize
				if lo >= n {
					return
				}
				fn(lo, min(lo+BulkSize, n))
			}
		})
	}
	wg.Wait()
}

// DeviceIdentity is how a device connects to an IoT hub over MQTT with a SAS token signed with
// its key: client id the device id, user name "{host}/{id}/?api-version=2021-04-12", and
// telemetry to devices/{id}/messages/events/.
func DeviceIdentity(host string, d DeviceKey, token string) Identity {
	return Identity{
		ClientID: d.ID,
		Username: host + "/" + d.ID + "/?api-version=" + client.APIVersion,
		Password: token,
		Topic:    "devices/" + d.ID + "/messages/events/",
	}
}
