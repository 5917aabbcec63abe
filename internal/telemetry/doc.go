// Package telemetry is the hub's device-to-cloud pipeline: it stores every message a device
// sends, durably and in order per device, and lets services read them back the way IoT Hub's
// Event Hubs-compatible endpoint does (partitions, offsets, enqueued times, consumer groups and
// checkpoints).
//
// Ingest is pipelined. [Pipeline.SendAsync] checks the message, appends it to its partition's
// stream and returns at once; [Pending.Wait] returns when the engine has stored it. A device
// edge acknowledges the device (MQTT PUBACK, HTTP 204) only then, so a message the device saw
// acknowledged is in the engine, and a reader that starts at the beginning sees it.
//
//	p, err := telemetry.Open(ctx, eng, telemetry.Config{})
//	pending, err := p.SendAsync(&telemetry.Message{DeviceID: "d1", Body: []byte(`{"t":21}`)})
//	receipt, err := pending.Wait(ctx) // now the device may be told
//
// Reading:
//
//	r, err := p.NewReader(ctx, telemetry.ReadOptions{From: telemetry.FromStart, DeviceID: "d1"})
//	defer r.Close()
//	for {
//		m, err := r.Next(ctx) // follows new messages until ctx ends
//		...
//		_ = r.Checkpoint(ctx, m) // the consumer group resumes after m next time
//	}
//
// # Layout in the engine
//
// Each partition is one stream, D2C-<n>, so sequence numbers within a partition are contiguous,
// like Event Hubs offsets. A message is stored under d2c.<n>.<device>.<module> (ids encoded with
// [engine.EncodeToken]; "=" stands for no module), so a reader filtered by device or module reads
// only that device's messages and creates no consumer per device. The partition is a fixed hash of
// the device id ([PartitionOf]): one device's messages stay in order in one partition.
//
// The partition count is fixed when the hub is created (IoT Hub fixes it too). It is recorded in
// the engine; opening the pipeline with another count fails with [ErrPartitionsChanged] rather than
// silently splitting devices over a new layout. The retention is applied to the streams on every
// start, so changing it takes effect (shortening it drops older messages), as IoT Hub allows.
//
// The stored value is a compact binary envelope ([Encode], [Decode]): a version byte, a header of
// tagged length-prefixed fields (device, module, system and application properties, the hub's
// annotations) and the body. Decoding never panics on corrupt input and costs one allocation for
// all the strings of a message.
package telemetry
