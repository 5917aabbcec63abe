// Package throttle enforces an IoT Hub tier's quotas and throttles on a Roost hub: the rate of
// each operation class in the tier table (spec/service-api.md §4.2), IoT Hub's traffic shaping
// (a burst is accepted, then operations queue and leave at the rate, then 429001
// ThrottlingException once the backlog is full), the features the basic tiers lack, and the
// daily message quota (403002 IotHubQuotaExceeded until 00:00 UTC).
//
// The default hub is unlimited, and its [Throttler] is nil: every method of a nil *Throttler
// returns at once, so the edges call it unconditionally.
//
//	th, err := throttle.New(throttle.Config{SKU: "S1", Units: 2})
//	err = th.Join(ctx, eng, throttle.JoinConfig{Node: nodeID}) // shares and the daily quota
//	defer th.Close()
//	if err := th.Message(ctx, throttle.D2C, 1, len(body)); err != nil { ... } // may wait
//
// Limits are for the hub, not per node: see cluster.go for how the nodes split the rates.
package throttle
