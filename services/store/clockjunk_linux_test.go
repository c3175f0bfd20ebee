package store

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Junk the worker appends to the clock log is reported by the maintenance
// window's clean (the log is append-only: it stays, and prune never reads
// it), so the operator learns of it; a torn record a power cut left is not
// junk.
func TestCleanForeignReportsClockLogJunk(t *testing.T) {
	for _, tc := range []struct {
		name     string
		appended int // bytes of junk appended after the last record
		reported bool
	}{
		{"no junk", 0, false},
		{"one torn record (a power cut)", 7, false},
		{"256 KiB of junk", 256 << 10, true},
		{"2 MiB of junk (more than the tail read)", 2 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, InitOptions{}, Options{})
			putObjects(t, s, "src", time.Time{}, map[string][]byte{"a": randBytes(1, 1000)})
			if tc.appended > 0 {
				f, err := os.OpenFile(s.clockLogPath(), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.Write(randBytes(2, tc.appended)); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			s = reopen(t, s, Options{})
			rep, err := s.CleanForeign(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var got *ForeignEntry
			for i, e := range rep.Entries {
				if e.Path == stateDir+"/"+clockLogName {
					got = &rep.Entries[i]
				}
			}
			if (got != nil) != tc.reported {
				t.Fatalf("clock log reported: %+v, want reported=%v", got, tc.reported)
			}
			if got != nil && (got.Removed || !strings.Contains(got.Detail, "not authentic records")) {
				t.Errorf("clock log entry %+v: want kept and its junk described", got)
			}
			if _, err := os.Stat(s.clockLogPath()); err != nil {
				t.Errorf("the clock log is gone: %v", err)
			}
		})
	}
}
