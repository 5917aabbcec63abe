package regjobs

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
)

// run is this node's runner: it looks for the active job every Poll (or when woken) and runs
// it when no other node holds its lease.
func (s *Service) run(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.Poll)
	defer tick.Stop()
	for {
		s.tryClaim(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.wake:
		}
	}
}

// tryClaim claims the active job if it is free and runs it to its end.
func (s *Service) tryClaim(ctx context.Context) {
	ent, err := s.b.Get(ctx, activeKey)
	if err != nil {
		return
	}
	id := string(ent.Value)
	st, rev, err := s.load(ctx, id)
	if errcode.Is(err, errcode.JobNotFound) || (err == nil && st.Job.Terminal()) {
		_ = s.b.Delete(ctx, activeKey, ent.Revision)
		return
	}
	now := s.cfg.Now()
	if err != nil || (st.Node != "" && st.LeaseUntil > now.UnixNano()) {
		return
	}
	if st.Node != "" {
		s.log.Warn("taking over an import/export job whose node stopped renewing it", "job", id, "node", st.Node)
	}
	st.Node, st.LeaseUntil = s.cfg.NodeID, now.Add(s.cfg.Lease).UnixNano()
	st.Job.Status, st.Job.Progress = StatusRunning, 0
	val, _ := json.Marshal(st)
	if _, err := s.b.Update(ctx, jobKey(id), val, rev); err != nil {
		return // another node claimed it first, or it was cancelled
	}
	s.mu.Lock()
	s.active = id
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active = ""
		s.mu.Unlock()
	}()
	s.execute(ctx, st.Job)
}

// errLost is the cause of a job's context when the job was cancelled or taken over.
var errLost = errors.New("the job was cancelled or another node took it over")

// execute runs a claimed job, renewing its lease and writing its progress every third of the
// lease, and writes its outcome.
func (s *Service) execute(ctx context.Context, job Job) {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var progress atomic.Int64
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		t := time.NewTicker(s.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			lost := false
			_, err := s.update(wctx, job.JobID, func(st *stored) bool {
				if st.Node != s.cfg.NodeID || st.Job.Terminal() {
					lost = true
					return false
				}
				st.LeaseUntil = s.cfg.Now().Add(s.cfg.Lease).UnixNano()
				st.Job.Progress = int(progress.Load())
				return true
			})
			if lost || errcode.Is(err, errcode.JobNotFound) {
				cancel(errLost)
				return
			}
		}
	}()
	var err error
	switch job.Type {
	case TypeExport:
		err = s.export(wctx, job, &progress)
	case TypeImport:
		err = s.importDevices(wctx, job, &progress)
	}
	cancel(nil)
	<-renewDone
	if errors.Is(context.Cause(wctx), errLost) || ctx.Err() != nil {
		// Cancelled: the record says so already. Node shutting down: the lease runs out and
		// another node runs the job again.
		return
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer fcancel()
	_, uerr := s.update(fctx, job.JobID, func(st *stored) bool {
		if st.Node != s.cfg.NodeID || st.Job.Terminal() {
			return false
		}
		now := s.cfg.Now().UTC()
		st.Job.EndTimeUTC = &now
		st.Node, st.LeaseUntil = "", 0
		if err != nil {
			st.Job.Status, st.Job.FailureReason = StatusFailed, failureReason(err)
		} else {
			st.Job.Status, st.Job.Progress = StatusCompleted, 100
		}
		return true
	})
	if uerr != nil {
		s.log.Warn("could not record the end of an import/export job", "job", job.JobID, "err", uerr)
		return
	}
	if err != nil {
		s.log.Info("import/export job failed", "job", job.JobID, "type", job.Type, "err", err)
	}
	s.releaseSlot(fctx, job.JobID)
}

func failureReason(err error) string {
	e := errcode.As(err)
	if e.Msg != "" {
		return e.Msg
	}
	return err.Error()
}

// Running returns the id of the job this node is running, or "".
func (s *Service) Running() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}
