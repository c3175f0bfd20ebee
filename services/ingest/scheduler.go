package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Clock is the time source of the Scheduler; tests use a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Job is one source on its schedule.
type Job struct {
	Name  string
	Every time.Duration
}

// Scheduler runs each job when it is due, one at a time (the store has one
// writer). Every job runs once when Run starts, then Every after its
// previous start; a job that comes due while another runs waits its turn,
// and one that overran its interval runs once as soon as it can (no
// catch-up burst). Jobs due at the same moment run in the order given.
type Scheduler struct {
	Clock Clock // nil: SystemClock
	Log   hclog.Logger
	// Pull pulls one source. Its error is logged; the schedule goes on.
	Pull func(ctx context.Context, name string) error
}

// Run runs jobs until ctx is done and returns ctx's error. A pull in
// progress is cancelled through its context.
func (s *Scheduler) Run(ctx context.Context, jobs []Job) error {
	clock := s.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	log := s.Log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if len(jobs) == 0 {
		return errors.New("scheduler: no jobs")
	}
	for _, j := range jobs {
		if j.Every <= 0 {
			return fmt.Errorf("scheduler: job %q: interval %s is not positive", j.Name, j.Every)
		}
	}
	start := clock.Now()
	next := make([]time.Time, len(jobs))
	for i := range next {
		next[i] = start
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The earliest due job; ties go to the first listed.
		i := 0
		for k := range jobs {
			if next[k].Before(next[i]) {
				i = k
			}
		}
		if wait := next[i].Sub(clock.Now()); wait > 0 {
			log.Debug("next pull", "source", jobs[i].Name, "at", next[i], "in", wait)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-clock.After(wait):
			}
			continue // re-check: the clock may have moved past other jobs
		}
		began := clock.Now()
		log.Info("scheduled pull", "source", jobs[i].Name)
		if err := s.Pull(ctx, jobs[i].Name); err != nil {
			log.Error("scheduled pull failed", "source", jobs[i].Name, "error", err)
		}
		next[i] = began.Add(jobs[i].Every)
		if now := clock.Now(); next[i].Before(now) {
			next[i] = now
		}
	}
}
