package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/services/mirror"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// TestDiskFailed checks which errors move the pulls to the next disk: only
// the disk's own failures, never a source's or a full disk's.
func TestDiskFailed(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"EIO wrapped", fmt.Errorf("source %q: store: %w", "mail", &os.PathError{Op: "write", Path: "/x", Err: syscall.EIO}), true},
		{"EROFS wrapped", fmt.Errorf("open: %w", syscall.EROFS), true},
		{"EIO as text", errors.New("commit: write /run/holdfast/disk-vdb/store/packs/ab: input/output error"), true},
		{"disk full", fmt.Errorf("store disk full: %w", syscall.ENOSPC), false},
		{"source refused", errors.New("source \"mail\": list: Access Denied"), false},
		{"context", context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := diskFailed(tt.err); got != tt.want {
				t.Errorf("diskFailed(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestScrubFindingsAccumulate: each batch of a scheduled slice that finds
// damaged copies adds them to every disk's state/scrub, which the next
// maintenance window repairs from; a batch with nothing damaged leaves the
// state alone, and one that cannot record them fails (the batch is then
// checked again, never dropped).
func TestScrubFindingsAccumulate(t *testing.T) {
	ctx := context.Background()
	var ds []*wdisk
	for _, name := range []string{"vdb", "vdc"} {
		dir := t.TempDir()
		for _, sub := range []string{"state", "tmp"} {
			if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		ds = append(ds, &wdisk{ref: control.Disk{Name: name, Dir: dir}})
	}
	w := &worker{log: hclog.NewNullLogger()}
	damaged := func(n int) *mirror.ScrubReport {
		r := &mirror.ScrubReport{}
		for i := range n {
			r.Fixes = append(r.Fixes, mirror.Fix{Rel: fmt.Sprintf("packs/ab/%d", i), From: "vdb", To: "vdc", Detail: "tag"})
		}
		return r
	}
	for _, n := range []int{2, 0, 3} {
		if err := w.scrubFindings(ctx, ds, damaged(n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range ds {
		st, err := store.ReadScrubState(d.ref.Dir)
		if err != nil || st.Damaged != 5 {
			t.Errorf("%s: scrub state %+v, %v; want 5 damaged", d.ref.Name, st, err)
		}
	}
	// state/ not writable as a directory: the batch fails.
	if err := os.RemoveAll(filepath.Join(ds[1].ref.Dir, "tmp")); err != nil {
		t.Fatal(err)
	}
	if err := w.scrubFindings(ctx, ds, damaged(1)); err == nil {
		t.Error("a batch whose damage could not be recorded was accepted")
	}
}
