package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/query"
	"github.com/roost-iot/roost/internal/throttle"
)

// Why a running job stopped before its devices were done.
var (
	errCancelled = errors.New("the job was cancelled")
	errDeadline  = errors.New("the job ran out of its maxExecutionTimeInSeconds")
	errLeaseLost = errors.New("another node took the job over")
)

// stopLocal stops the job if this node runs it.
func (s *Service) stopLocal(id string, cause error) {
	s.mu.Lock()
	cancel := s.active[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
}

// loop is the node's scheduler: it looks for due jobs every PollInterval and whenever a node
// announces a change, and purges old jobs every PurgeInterval.
func (s *Service) loop() {
	defer s.wg.Done()
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	purge := time.NewTicker(s.cfg.PurgeInterval)
	defer purge.Stop()
	s.schedule()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-poll.C:
		case <-s.wake:
		case <-purge.C:
			if n, err := s.Purge(s.ctx); err != nil {
				s.log.Warn("could not purge old jobs", "err", err)
			} else if n > 0 {
				s.log.Info("purged old jobs", "count", n)
			}
		}
		s.schedule()
	}
}

// schedule claims every active job that is due and that no live node runs.
func (s *Service) schedule() {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	ids, err := s.activeIDs(ctx)
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("could not read the active jobs", "err", err)
		}
		return
	}
	for _, id := range ids {
		if s.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		_, mine := s.active[id]
		s.mu.Unlock()
		if mine {
			continue
		}
		s.claim(ctx, id)
	}
}

// claim takes a due job with a compare-and-set on its record and starts running it.
func (s *Service) claim(ctx context.Context, id string) {
	rec, rev, err := s.load(ctx, id)
	now := s.now()
	if err == nil && rec.Status == StatusCancelled && rec.Owner != "" && (rec.Owner == s.cfg.NodeID || !rec.LeaseUntil.After(now)) {
		// Cancelled while its node was dead: nobody will settle its rows but us.
		n := s.settleRows(ctx, rec, DeviceCanceled, nil)
		rec, err = s.update(ctx, id, func(r *record) (bool, error) {
			st := &r.DeviceJobStatistics
			st.FailedCount += n[DevicePending] + n[DeviceRunning]
			st.PendingCount = max(st.PendingCount-n[DevicePending], 0)
			st.RunningCount = max(st.RunningCount-n[DeviceRunning], 0)
			r.Owner, r.LeaseUntil = "", time.Time{}
			return true, nil
		})
	}
	if errcode.Is(err, errcode.JobNotFound) || (err == nil && rec.Terminal()) {
		s.removeActive(ctx, id)
		return
	}
	if err != nil {
		return
	}
	switch rec.Status {
	case StatusQueued, StatusScheduled:
		if rec.StartTime.After(now) {
			return
		}
	case StatusRunning:
		if rec.Owner != "" && rec.Owner != s.cfg.NodeID && rec.LeaseUntil.After(now) {
			return // a live node runs it
		}
	default:
		return
	}
	rec.Owner, rec.LeaseUntil, rec.Status = s.cfg.NodeID, now.Add(s.cfg.LeaseTTL), StatusRunning
	if rec.RunStart.IsZero() {
		rec.RunStart = now
	}
	b, _ := json.Marshal(rec)
	if _, err := s.bucket.Update(ctx, recordKey(id), b, rev); err != nil {
		return // another node was faster
	}
	rctx, rcancel := context.WithCancelCause(s.ctx)
	s.mu.Lock()
	s.active[id] = rcancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.active, id)
			s.mu.Unlock()
			rcancel(nil)
		}()
		r := &runner{s: s, rec: rec, cancel: rcancel, counts: map[string]int{}}
		r.run(rctx)
	}()
}

// runner works on one job on this node.
type runner struct {
	s      *Service
	rec    record
	cancel context.CancelCauseFunc

	mu     sync.Mutex
	counts map[string]int // rows by status
}

func (r *runner) deadline() time.Time {
	return r.rec.RunStart.Add(time.Duration(r.rec.MaxExecutionTimeInSeconds) * time.Second)
}

func (r *runner) stats() Statistics {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts
	return Statistics{
		DeviceCount:    c[DevicePending] + c[DeviceRunning] + c[DeviceCompleted] + c[DeviceFailed] + c[DeviceCanceled],
		FailedCount:    c[DeviceFailed] + c[DeviceCanceled],
		SucceededCount: c[DeviceCompleted],
		RunningCount:   c[DeviceRunning],
		PendingCount:   c[DevicePending],
	}
}

func (r *runner) move(from, to string) {
	r.mu.Lock()
	if from != "" {
		r.counts[from]--
	}
	r.counts[to]++
	r.mu.Unlock()
}

// bg is a context for writes that must happen even though the job's context ended (recording
// what was done, releasing the job).
func bg() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

func (r *runner) run(ctx context.Context) {
	s, id := r.s, r.rec.JobID
	if !r.rec.Targeted {
		if err := r.target(ctx); err != nil {
			if ctx.Err() != nil {
				r.stopped(ctx)
				return
			}
			s.log.Warn("could not select the job's devices", "job", id, "err", err)
			r.finish(StatusFailed, "the devices of the job could not be selected: "+errcode.As(err).Msg, err)
			return
		}
	}
	todo, err := r.loadRows(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("could not read the job's devices", "job", id, "err", err)
		}
		r.stopped(ctx)
		return
	}

	keepDone := make(chan struct{})
	keepCtx, stopKeep := context.WithCancel(ctx)
	go func() {
		defer close(keepDone)
		r.keep(keepCtx)
	}()

	work := make(chan string)
	var wg sync.WaitGroup
	for range min(s.cfg.Workers, max(len(todo), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dev := range work {
				r.device(ctx, dev)
			}
		}()
	}
feed:
	for _, dev := range todo {
		select {
		case work <- dev:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	stopKeep()
	<-keepDone
	r.stopped(ctx)
}

// stopped ends the run according to why it stopped.
func (r *runner) stopped(ctx context.Context) {
	switch cause := context.Cause(ctx); {
	case ctx.Err() == nil:
		r.finish(StatusCompleted, "", nil)
	case errors.Is(cause, errCancelled):
		r.settle(DeviceCanceled, nil)
		r.finish(StatusCancelled, "", nil)
	case errors.Is(cause, errDeadline):
		e := errcode.New(errcode.RequestTimedOut, "the job reached its maxExecutionTimeInSeconds (%d) before this device", r.rec.MaxExecutionTimeInSeconds)
		r.settle(DeviceFailed, rowError(e))
		r.finish(StatusFailed, "the job did not reach every device within its maxExecutionTimeInSeconds ("+
			strconv.FormatInt(r.rec.MaxExecutionTimeInSeconds, 10)+")", e)
	case errors.Is(cause, errLeaseLost):
		// Another node runs it now.
	default:
		r.release()
	}
}

// target evaluates the job's condition over the device twins and writes a pending row for each
// device it selects. A row that exists (a node stopped while targeting) is kept as it is.
func (r *runner) target(ctx context.Context) error {
	s := r.s
	cond, err := query.ParseCondition(r.rec.QueryCondition)
	if err != nil {
		return err
	}
	var devs []string
	if err := s.cfg.Devices(ctx, false, func(doc map[string]any) bool {
		if cond.Match(doc) {
			if d, ok := doc["deviceId"].(string); ok {
				devs = append(devs, d)
			}
		}
		return ctx.Err() == nil
	}); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	for _, d := range devs {
		row := Row{DeviceID: d, JobID: r.rec.JobID, JobType: r.rec.Type, Status: DevicePending,
			CreatedDateTimeUtc: now, LastUpdatedDateTimeUtc: now, Outcome: &Outcome{}}
		b, _ := json.Marshal(row)
		if _, err := s.bucket.Create(ctx, rowKey(r.rec.JobID, d), b); err != nil && !errors.Is(err, engine.ErrExists) {
			return engineError(err)
		}
	}
	rec, err := s.update(ctx, r.rec.JobID, func(rec *record) (bool, error) {
		if rec.Owner != s.cfg.NodeID {
			return false, errLeaseLost
		}
		rec.Targeted = true
		rec.DeviceJobStatistics = Statistics{DeviceCount: len(devs), PendingCount: len(devs)}
		return true, nil
	})
	if errors.Is(err, errLeaseLost) {
		r.cancel(errLeaseLost)
		return err
	}
	if err != nil {
		return err
	}
	r.rec = rec
	return nil
}

// loadRows reads the job's rows, counts them and returns the devices still to do. A method row
// left "running" by a node that stopped during the call is failed rather than called again: the
// device may have run the method already.
func (r *runner) loadRows(ctx context.Context) ([]string, error) {
	s := r.s
	var todo []string
	var inflight []Row
	err := s.bucket.Scan(ctx, []string{rowFilter(r.rec.JobID)}, func(e engine.Entry) bool {
		var row Row
		if json.Unmarshal(e.Value, &row) != nil {
			return true
		}
		switch {
		case row.Status == DevicePending, row.Status == DeviceRunning && r.rec.Type == TypeUpdateTwin:
			todo = append(todo, row.DeviceID)
			r.move("", DevicePending)
		case row.Status == DeviceRunning:
			inflight = append(inflight, row)
			r.move("", DeviceRunning)
		default:
			r.move("", row.Status)
		}
		return true
	})
	if err != nil {
		return nil, engineError(err)
	}
	for _, row := range inflight {
		e := errcode.New(errcode.ServerError, "the node running the job stopped while this device's method call was in flight: it is not called again, so that the method runs at most once")
		r.write(row, DeviceFailed, nil, rowError(e))
		r.move(DeviceRunning, DeviceFailed)
	}
	return todo, nil
}

// keep renews the job's lease and writes its statistics every PollInterval, and stops the run
// when the job was cancelled, taken over, or ran out of time.
func (r *runner) keep(ctx context.Context) {
	s := r.s
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.now().Before(r.deadline()) {
			r.cancel(errDeadline)
			return
		}
		st := r.stats()
		_, err := s.update(ctx, r.rec.JobID, func(rec *record) (bool, error) {
			if rec.Owner != s.cfg.NodeID {
				return false, errLeaseLost
			}
			if rec.Status == StatusCancelled {
				return false, errCancelled
			}
			rec.LeaseUntil = s.now().Add(s.cfg.LeaseTTL)
			rec.DeviceJobStatistics = st
			return true, nil
		})
		if errors.Is(err, errLeaseLost) || errors.Is(err, errCancelled) {
			r.cancel(err)
			return
		}
	}
}

// device applies the job to one device and records the outcome in its row.
func (r *runner) device(ctx context.Context, dev string) {
	s := r.s
	if ctx.Err() != nil {
		return
	}
	if !s.now().Before(r.deadline()) {
		r.cancel(errDeadline)
		return
	}
	// The tier's jobs per-device rate paces the job: a full backlog means wait and try again,
	// never fail the device.
	for {
		err := s.cfg.Throttle.Wait(ctx, throttle.JobDevices, 1)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	row := Row{DeviceID: dev, JobID: r.rec.JobID, JobType: r.rec.Type, CreatedDateTimeUtc: r.rec.RunStart, Outcome: &Outcome{}}
	start := s.now()
	row.StartTimeUtc = &start
	switch r.rec.Type {
	case TypeUpdateTwin:
		// Once begun, a twin update is finished and recorded even if the node is stopping, so
		// that the node taking over does not apply it again.
		actx, cancel := bg()
		_, err := s.cfg.Twins.Update(actx, dev, "", r.rec.UpdateTwin, r.rec.IfMatch)
		cancel()
		if err != nil {
			r.write(row, DeviceFailed, nil, rowError(err))
			r.move(DevicePending, DeviceFailed)
			return
		}
		r.write(row, DeviceCompleted, nil, nil)
		r.move(DevicePending, DeviceCompleted)
	case TypeDeviceMethod:
		r.write(row, DeviceRunning, nil, nil)
		r.move(DevicePending, DeviceRunning)
		m := r.rec.CloudToDeviceMethod
		call := methods.Call{DeviceID: dev, MethodName: m.MethodName, Payload: m.Payload,
			ResponseTimeout: time.Duration(m.ResponseTimeoutInSeconds) * time.Second,
			ConnectTimeout:  time.Duration(m.ConnectTimeoutInSeconds) * time.Second}
		if string(call.Payload) == "null" {
			call.Payload = nil
		}
		res, err := s.cfg.Methods.Invoke(ctx, call)
		switch {
		case ctx.Err() != nil && errors.Is(context.Cause(ctx), errCancelled):
			r.write(row, DeviceCanceled, nil, nil)
			r.move(DeviceRunning, DeviceCanceled)
		case ctx.Err() != nil && errors.Is(context.Cause(ctx), errDeadline):
			e := errcode.New(errcode.RequestTimedOut, "the job reached its maxExecutionTimeInSeconds (%d) during this device's method call", r.rec.MaxExecutionTimeInSeconds)
			r.write(row, DeviceFailed, nil, rowError(e))
			r.move(DeviceRunning, DeviceFailed)
		case ctx.Err() != nil:
			// The node is stopping or lost the job: the row stays running, and the node that
			// goes on reports it (see loadRows).
		case err != nil:
			r.write(row, DeviceFailed, nil, rowError(err))
			r.move(DeviceRunning, DeviceFailed)
		default:
			out := &Outcome{DeviceMethodResponse: &MethodResponse{Status: res.Status, Payload: json.RawMessage(res.Payload)}}
			r.write(row, DeviceCompleted, out, nil)
			r.move(DeviceRunning, DeviceCompleted)
		}
	}
}

// write stores a device row with its new status.
func (r *runner) write(row Row, status string, out *Outcome, rerr *RowError) {
	s := r.s
	now := s.now()
	row.Status, row.LastUpdatedDateTimeUtc, row.Error = status, now, rerr
	if out != nil {
		row.Outcome = out
	}
	if row.CreatedDateTimeUtc.IsZero() {
		row.CreatedDateTimeUtc = now
	}
	switch status {
	case DeviceCompleted, DeviceFailed, DeviceCanceled:
		row.EndTimeUtc = &now
	}
	b, _ := json.Marshal(row)
	ctx, cancel := bg()
	defer cancel()
	if _, err := s.bucket.Put(ctx, rowKey(row.JobID, row.DeviceID), b); err != nil {
		s.log.Warn("could not record a device's job outcome", "job", row.JobID, "device", row.DeviceID, "err", err)
	}
}

// settle gives every row still pending (or, for a cancel, running) the status, and counts it.
func (r *runner) settle(status string, rerr *RowError) {
	n := r.s.settleRows(context.Background(), r.rec, status, rerr)
	r.mu.Lock()
	for from, k := range n {
		r.counts[from] -= k
		r.counts[status] += k
	}
	r.mu.Unlock()
}

// settleRows gives every row of the job still pending (running too, for a cancel) the status;
// it returns how many rows it changed, by their former status.
func (s *Service) settleRows(ctx context.Context, rec record, status string, rerr *RowError) map[string]int {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var rows []Row
	_ = s.bucket.Scan(ctx, []string{rowFilter(rec.JobID)}, func(e engine.Entry) bool {
		var row Row
		if json.Unmarshal(e.Value, &row) == nil &&
			(row.Status == DevicePending || row.Status == DeviceRunning && status == DeviceCanceled) {
			rows = append(rows, row)
		}
		return true
	})
	changed := map[string]int{}
	now := s.now()
	for _, row := range rows {
		changed[row.Status]++
		row.Status, row.LastUpdatedDateTimeUtc, row.EndTimeUtc, row.Error = status, now, &now, rerr
		b, _ := json.Marshal(row)
		_, _ = s.bucket.Put(ctx, rowKey(row.JobID, row.DeviceID), b)
	}
	return changed
}

// finish records the job's end, takes it off the active list, and writes its record and
// metrics.
func (r *runner) finish(status, reason string, cause error) {
	s := r.s
	ctx, cancel := bg()
	defer cancel()
	st := r.stats()
	now := s.now()
	rec, err := s.update(ctx, r.rec.JobID, func(rec *record) (bool, error) {
		if rec.Owner != s.cfg.NodeID {
			return false, errLeaseLost
		}
		if rec.Status != StatusCancelled {
			rec.Status, rec.FailureReason = status, reason
		}
		if rec.EndTime == nil {
			rec.EndTime = &now
		}
		rec.Owner, rec.LeaseUntil = "", time.Time{}
		rec.DeviceJobStatistics = st
		return true, nil
	})
	if err != nil {
		if !errors.Is(err, errLeaseLost) {
			s.log.Warn("could not record the end of a job", "job", r.rec.JobID, "err", err)
		}
		return
	}
	s.removeActive(ctx, rec.JobID)
	s.wakeAll() // a slot is free: a waiting job may start
	s.finishRecord(rec, cause)
}

// release gives the job up so that another node goes on with it at once (this node is
// stopping).
func (r *runner) release() {
	s := r.s
	ctx, cancel := bg()
	defer cancel()
	st := r.stats()
	_, err := s.update(ctx, r.rec.JobID, func(rec *record) (bool, error) {
		if rec.Owner != s.cfg.NodeID {
			return false, nil
		}
		rec.Owner, rec.LeaseUntil = "", time.Time{}
		rec.DeviceJobStatistics = st
		return true, nil
	})
	if err != nil {
		s.log.Warn("could not release a job; another node takes it over when its lease ends", "job", r.rec.JobID, "err", err)
		return
	}
	_ = s.cfg.Engine.PublishCore(engine.JobsSubject("wake"), nil)
}

// finishRecord counts an ended job and writes its JobsOperations record: jobCompleted, or
// jobFailed at level Error. A cancelled job's record is the cancel request's own.
func (s *Service) finishRecord(rec record, cause ...error) {
	var err error
	if len(cause) > 0 {
		err = cause[0]
	}
	op := diag.OpJobCompleted
	switch rec.Status {
	case StatusCompleted:
		s.m.Completed.Inc()
	case StatusFailed:
		s.m.Failed.Inc()
		op = diag.OpJobFailed
		if err == nil {
			err = errcode.New(errcode.ServerError, "%s", rec.FailureReason)
		}
	default:
		return
	}
	if s.cfg.Diag == nil {
		return
	}
	var d time.Duration
	if rec.EndTime != nil && !rec.RunStart.IsZero() {
		d = rec.EndTime.Sub(rec.RunStart)
	}
	ctx, cancel := bg()
	defer cancel()
	s.cfg.Diag.Write(ctx, diag.Record{
		Category: diag.JobsOperations, OperationName: op, Err: err, DurationMs: d.Milliseconds(),
		Properties: map[string]any{
			"jobId":        rec.JobID,
			"sdkVersion":   rec.SDKVersion,
			"messageSize":  rec.MessageSize,
			"filter":       rec.QueryCondition,
			"startTimeUtc": longDate(rec.StartTime),
			"duration":     strconv.FormatInt(int64(d/time.Second), 10),
		},
	})
}
