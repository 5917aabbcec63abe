package regjobs

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/blob/blobtest"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/registry"
)

// node is one hub node on a shared nats-server: its own engine connection, registry, built-in
// blob store and jobs service.
type node struct {
	eng   *engine.Engine
	reg   *registry.Registry
	store *blob.Local
	svc   *Service
}

func startNode(t *testing.T, x *enginetest.External, id string) *node {
	t.Helper()
	ctx := context.Background()
	eng := x.Connect(t)
	reg, err := registry.New(ctx, eng, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := blobtest.Open(t, eng, blob.LocalConfig{NodeID: id})
	svc, err := New(ctx, Config{Engine: eng, Registry: reg, Blobs: st, NodeID: id, Lease: 900 * time.Millisecond, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return &node{eng: eng, reg: reg, store: st, svc: svc}
}

func waitJob(t *testing.T, s *Service, id string) Job {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		j, err := s.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Terminal() {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("job %s did not end", id)
	return Job{}
}

// TestJobsAcrossNodes runs two nodes on one nats-server. A job created on one node is seen by
// the other, the one-job cap holds across nodes, and a job whose node died (its lease, held by a
// node that no longer exists, runs out) is taken over and finished by a live node.
func TestJobsAcrossNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	x := enginetest.StartExternal(t)
	a, b := startNode(t, x, "a"), startNode(t, x, "b")
	for i := range 20 {
		if _, err := a.reg.CreateDevice(ctx, registry.Device{DeviceID: fmt.Sprintf("d%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	cont := a.store.ContainerURI() + a.store.ContainerSAS("rcw", time.Now().Add(time.Hour))

	// A job "ghost", a node that died, claimed and never finished: its lease runs out in a second.
	ghost := Job{JobID: newJobID(), Type: TypeExport, Status: StatusRunning, OutputBlobContainerURI: cont, OutputBlobName: "ghost.txt"}
	now := time.Now().UTC()
	ghost.StartTimeUTC = &now
	val, _ := json.Marshal(stored{Job: ghost, Node: "ghost", LeaseUntil: time.Now().Add(time.Second).UnixNano()})
	if _, err := a.svc.b.Create(ctx, jobKey(ghost.JobID), val); err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.b.Create(ctx, activeKey, []byte(ghost.JobID)); err != nil {
		t.Fatal(err)
	}
	// Meanwhile neither node may start another job, whichever is asked.
	for _, n := range []*node{a, b} {
		if _, err := n.svc.Create(ctx, Request{Type: TypeExport, OutputBlobContainerURI: cont}); !errcode.Is(err, errcode.JobQuotaExceeded) {
			t.Fatalf("create while the ghost's job holds the slot: %v", err)
		}
	}
	if j, err := b.svc.Get(ctx, ghost.JobID); err != nil || j.Status != StatusRunning {
		t.Fatalf("ghost's job seen from b: %+v %v", j, err)
	}
	done := waitJob(t, b.svc, ghost.JobID)
	if done.Status != StatusCompleted {
		t.Fatalf("taken-over job ended %+v", done)
	}
	if p, err := b.store.Stat(ctx, "ghost.txt"); err != nil || p.Size == 0 {
		t.Fatalf("ghost.txt after the takeover: %+v %v", p, err)
	}

	// A job created on b runs on one node and is answered by both.
	job, err := b.svc.Create(ctx, Request{Type: TypeExport, OutputBlobContainerURI: cont})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.Create(ctx, Request{Type: TypeExport, OutputBlobContainerURI: cont}); err != nil && !errcode.Is(err, errcode.JobQuotaExceeded) {
		t.Fatal(err)
	}
	ja, jb := waitJob(t, a.svc, job.JobID), waitJob(t, b.svc, job.JobID)
	if ja.Status != StatusCompleted || jb.Status != StatusCompleted {
		t.Fatalf("job seen as %s from a and %s from b", ja.Status, jb.Status)
	}
	list, err := a.svc.List(ctx)
	if err != nil || len(list) < 2 {
		t.Fatalf("list from a: %v %v", list, err)
	}
}
