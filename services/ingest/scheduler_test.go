package ingest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	waiting chan struct{} // a signal per After call
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t, waiting: make(chan struct{}, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	c.mu.Unlock()
	c.waiting <- struct{}{}
	return ch
}

// Advance moves the clock and fires due timers.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

type run struct {
	name string
	at   time.Duration // since the clock's start
}

// schedulerHarness runs a Scheduler on a fake clock and records pulls.
type schedulerHarness struct {
	t      *testing.T
	clock  *fakeClock
	start  time.Time
	runs   chan run
	during func(name string) // runs inside each pull
	done   chan error
	cancel context.CancelFunc
}

func startScheduler(t *testing.T, jobs []Job, during func(h *schedulerHarness, name string)) *schedulerHarness {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &schedulerHarness{t: t, clock: newFakeClock(start), start: start, runs: make(chan run, 100), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	s := &Scheduler{Clock: h.clock, Log: testLogger(t), Pull: func(ctx context.Context, name string) error {
		h.runs <- run{name, h.clock.Now().Sub(start)}
		if during != nil {
			during(h, name)
		}
		return errors.New("pull errors are logged, not fatal")
	}}
	go func() { h.done <- s.Run(ctx, jobs) }()
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	return h
}

// expect reads the next n pulls.
func (h *schedulerHarness) expect(want ...run) {
	h.t.Helper()
	for _, w := range want {
		select {
		case got := <-h.runs:
			if got != w {
				h.t.Fatalf("pull %+v, want %+v", got, w)
			}
		case <-time.After(5 * time.Second):
			h.t.Fatalf("no pull; want %+v", w)
		}
	}
}

// waitIdle waits until the scheduler sleeps on the clock.
func (h *schedulerHarness) waitIdle() {
	h.t.Helper()
	select {
	case <-h.clock.waiting:
	case <-time.After(5 * time.Second):
		h.t.Fatal("scheduler never waited on the clock")
	}
}

func TestSchedulerOrder(t *testing.T) {
	h := startScheduler(t, []Job{{"six", 6 * time.Hour}, {"hourly", time.Hour}}, nil)
	// Both run at start, in the order given.
	h.expect(run{"six", 0}, run{"hourly", 0})
	for i := 1; i <= 5; i++ {
		h.waitIdle()
		h.clock.Advance(time.Hour)
		h.expect(run{"hourly", time.Duration(i) * time.Hour})
	}
	h.waitIdle()
	h.clock.Advance(time.Hour)
	h.expect(run{"six", 6 * time.Hour}, run{"hourly", 6 * time.Hour})
	// Half an hour on, nothing is due; an hour on, hourly is.
	h.waitIdle()
	h.clock.Advance(30 * time.Minute)
	select {
	case r := <-h.runs:
		t.Fatalf("unexpected pull %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
	h.clock.Advance(30 * time.Minute)
	h.expect(run{"hourly", 7 * time.Hour})
}

// TestSchedulerOverrun: a pull longer than its interval is followed by one
// pull, not a burst of catch-ups; another due job gets its turn first.
func TestSchedulerOverrun(t *testing.T) {
	slow := true
	h := startScheduler(t, []Job{{"slow", time.Hour}, {"other", 2 * time.Hour}}, func(h *schedulerHarness, name string) {
		if name == "slow" && slow {
			slow = false
			h.clock.Advance(3*time.Hour + 30*time.Minute) // overruns three intervals
		}
	})
	h.expect(run{"slow", 0}, run{"other", 3*time.Hour + 30*time.Minute})
	// slow was due at 1h (long past): it runs now, once.
	h.expect(run{"slow", 3*time.Hour + 30*time.Minute})
	h.waitIdle()
	h.clock.Advance(time.Hour)
	h.expect(run{"slow", 4*time.Hour + 30*time.Minute})
}

// TestSchedulerCancel: cancelling stops a waiting scheduler and cancels the
// pull in progress.
func TestSchedulerCancel(t *testing.T) {
	t.Run("while waiting", func(t *testing.T) {
		h := startScheduler(t, []Job{{"a", time.Hour}}, nil)
		h.expect(run{"a", 0})
		h.waitIdle()
		h.cancel()
		select {
		case err := <-h.done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run returned %v", err)
			}
			h.done <- err // for the cleanup
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
	t.Run("during a pull", func(t *testing.T) {
		clock := newFakeClock(time.Unix(0, 0))
		ctx, cancel := context.WithCancel(context.Background())
		pullCtxErr := make(chan error, 1)
		s := &Scheduler{Clock: clock, Pull: func(pctx context.Context, name string) error {
			cancel()
			<-pctx.Done()
			pullCtxErr <- pctx.Err()
			return pctx.Err()
		}}
		err := s.Run(ctx, []Job{{"a", time.Hour}})
		if !errors.Is(err, context.Canceled) || !errors.Is(<-pullCtxErr, context.Canceled) {
			t.Fatalf("Run returned %v", err)
		}
	})
}

func TestSchedulerBadJobs(t *testing.T) {
	tests := []struct {
		name string
		jobs []Job
	}{
		{"none", nil},
		{"zero interval", []Job{{"a", 0}}},
	}
	for _, tt := range tests {
		s := &Scheduler{Clock: newFakeClock(time.Unix(0, 0)), Pull: func(context.Context, string) error { return nil }}
		if err := s.Run(context.Background(), tt.jobs); err == nil {
			t.Errorf("%s: Run accepted %v", tt.name, tt.jobs)
		}
	}
}
