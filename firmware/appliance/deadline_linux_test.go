package appliance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBounded runs maintenance steps under their deadline: one that
// returns in time, one that honours its context, and one blocked in a
// system call that no context reaches (a blocking open of a FIFO no one
// writes, what a planted wip/<id>.journal did to every boot before the
// store opened files O_NONBLOCK): that one is reported stuck once the
// deadline and the grace have passed, and the caller goes on.
func TestBounded(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "journal")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		fn    func(context.Context)
		stuck bool
	}{
		{"quick", func(context.Context) {}, false},
		{"honours its context", func(ctx context.Context) { <-ctx.Done() }, false},
		{"blocked in open(2)", func(context.Context) {
			f, err := os.OpenFile(fifo, os.O_RDONLY, 0) // blocks: no writer
			if err == nil {
				f.Close()
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := bounded(t.Context(), "step "+tc.name, 200*time.Millisecond, 300*time.Millisecond, tc.fn)
			took := time.Since(start)
			var se *StuckError
			if got := errors.As(err, &se); got != tc.stuck {
				t.Fatalf("err %v, want stuck %v", err, tc.stuck)
			}
			if tc.stuck && (took < 500*time.Millisecond || took > 3*time.Second || se.Step != "step "+tc.name) {
				t.Errorf("stuck after %s (%v), want after the deadline and the grace", took, err)
			}
			if !tc.stuck && err != nil {
				t.Errorf("err %v", err)
			}
		})
	}
	// Let the blocked opener go.
	if f, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
}
