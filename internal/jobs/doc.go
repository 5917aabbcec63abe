// Package jobs runs IoT Hub's jobs v2: a twin update or a direct method call scheduled over every
// device whose twin matches a condition (spec/service-api.md §2.9), as the service SDKs'
// JobClient creates, reads, lists and cancels them.
//
//	svc, err := jobs.New(ctx, jobs.Config{Engine: eng, Twins: twins, Methods: meth, Devices: twins.Scan, NodeID: "node-a"})
//	job, err := svc.Create(ctx, "reboot-a", body, jobs.Caller{APIVersion: "2021-04-12"})
//	job, err = svc.Get(ctx, "reboot-a")
//	job, err = svc.Cancel(ctx, "reboot-a")
//	defer svc.Close()
//
// Everything durable lives in the engine's jobsv2 bucket: one record per job (the JobResponse
// IoT Hub answers, plus which node runs it and until when its lease holds), one row per targeted
// device (the devices.jobs rows of the query language), and the list of active jobs, which
// bounds how many may be active at once (the tier's limit) with a compare-and-set.
//
// Exactly one node runs a job. Every node polls the active list (and is woken at once when a
// job is created or released); a node claims a job that is due by writing its name and a lease
// into the job's record with a compare-and-set, and keeps renewing the lease while it works,
// writing the job's statistics at the same time. A node that shuts down releases its jobs; one
// that dies loses them when the lease runs out. The next node reads the rows and goes on with
// the devices not done yet, so a device's twin is updated once, and a method is called at most
// once (a call that was in flight on a node that died is reported failed, not repeated).
//
// Any node answers Get, List and Cancel from the engine. A cancel writes the record and tells
// every node over engine.JobsSubject("cancel"), so the node running the job stops within a
// round trip.
//
// Per device, a twin update goes through the twin store (so a connected device gets its
// desired-property notification and the twin's etag and version move) and a method call goes
// through the methods service (a device that is offline fails with 404103 DeviceNotOnline in its
// row, a device that does not answer in time with 504101). Each device costs one operation of
// the tier's "jobs per-device operations" rate, which paces the job instead of failing it.
package jobs
