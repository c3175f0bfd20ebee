package store

import (
	"errors"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestConfirmRetention plays the worker that answers "done" to an extend
// or a hold: PID 1 confirms from sealed data alone. The adversary is code
// inside the worker with its keys, which can write an authentic record
// without sealing it (and rewrite it later), or write nothing at all.
func TestConfirmRetention(t *testing.T) {
	s := newStore(t, InitOptions{}, Options{})
	until := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	m := putObjects(t, s, "src", until, map[string][]byte{"a": []byte("x")})
	later := until.Add(90 * 24 * time.Hour)

	// plantUnsealed writes an authentic extension record, as the worker
	// can with the meta key, and never asks the sealer to seal it.
	plantUnsealed := func(t *testing.T, x retentionExt) {
		t.Helper()
		plain, err := s.codec.marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		name := m.ID + "." + strconv.FormatInt(x.At, 10) + ".ext"
		if err := os.WriteFile(s.path(retentionDir, name), sealTo([]byte(extMagic), s.keys.meta, []byte("HFRX"+name), plain), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name  string
		do    func(t *testing.T)
		until time.Time
		hold  bool
		ok    bool
	}{
		{"the manifest's own date", nil, until, false, true},
		{"nothing recorded: extend", nil, later, false, false},
		{"nothing recorded: hold", nil, time.Time{}, true, false},
		{"unsealed authentic record", func(t *testing.T) {
			plantUnsealed(t, retentionExt{Snapshot: m.ID, RetainUntil: later.UnixNano(), LegalHold: true, At: time.Now().UnixNano()})
		}, later, true, false},
		{"sealed extend", func(t *testing.T) {
			if err := s.Extend(m.ID, later, false, "console: extend"); err != nil {
				t.Fatal(err)
			}
		}, later, false, true},
		{"a later date than recorded", nil, later.Add(time.Hour), false, false},
		{"sealed hold", func(t *testing.T) {
			if err := s.Extend(m.ID, time.Time{}, true, "console: hold"); err != nil {
				t.Fatal(err)
			}
		}, later, true, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.do != nil {
				st.do(t)
			}
			err := s.ConfirmRetention(m.ID, st.until, st.hold)
			if st.ok && err != nil {
				t.Fatalf("confirm: %v", err)
			}
			if !st.ok && !errors.Is(err, ErrUnconfirmed) {
				t.Fatalf("confirm: %v, want ErrUnconfirmed", err)
			}
			t.Logf("confirm until %s hold %v: %v", st.until.Format(time.RFC3339), st.hold, err)
		})
	}
	if err := s.ConfirmRetention("20990101T000000Z-00000000", later, false); err == nil || errors.Is(err, ErrUnconfirmed) {
		t.Errorf("a snapshot that does not exist: %v", err)
	}
}
