package trustedtime

import (
	"crypto/hkdf"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func testMaster() []byte {
	m := make([]byte, 32)
	for i := range m {
		m[i] = byte(i*7 + 1)
	}
	return m
}

// workerKeys are MAC keys a compromised worker can compute today: the old
// clock-anchor key and the store's keys are HKDF of the master key it
// receives, and any key of its own choosing.
func workerKeys(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{"a key of its own": make([]byte, 32)}
	for _, info := range []string{"holdfast tpm clock anchor v1", "holdfast store clock v1"} {
		k, err := hkdf.Key(sha256.New, testMaster(), nil, info, 32)
		if err != nil {
			t.Fatal(err)
		}
		out[info] = k
	}
	return out
}

// TestRecordsHostile: a record PID 1 did not write, or a file that is not
// a plain record, never moves T: Load keeps the genuine record.
func TestRecordsHostile(t *testing.T) {
	key, err := Key(testMaster())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	genuine := State{T: t0, Wall: t0, Reading: Reading{TPM: [32]byte{1}, Clock: 5000}}
	farFuture := State{T: future, Wall: future, Reading: Reading{TPM: [32]byte{1}, Clock: 1 << 40}}
	type tc struct {
		name    string
		slotB   func(t *testing.T, path string) // writes time.b
		wantT   time.Time
		ignored bool
	}
	cases := []tc{
		{"no second slot", func(*testing.T, string) {}, t0, false},
		{"genuine newer record (control)", func(t *testing.T, p string) { write(t, p, Encode(key, 5, farFuture)) }, future, false},
		{"random bytes of a record's size", func(t *testing.T, p string) {
			b := make([]byte, RecordLen)
			for i := range b {
				b[i] = byte(i * 31)
			}
			write(t, p, b)
		}, t0, true},
		{"genuine record with T changed", func(t *testing.T, p string) {
			b := Encode(key, 5, genuine)
			copy(b[18:26], Encode(key, 5, farFuture)[18:26])
			write(t, p, b)
		}, t0, true},
		{"torn genuine record", func(t *testing.T, p string) { write(t, p, Encode(key, 5, farFuture)[:60]) }, t0, true},
		{"genuine record with bytes after it", func(t *testing.T, p string) {
			write(t, p, append(Encode(key, 5, farFuture), make([]byte, 1<<20)...))
		}, t0, true},
		{"genuine record in the wrong slot", func(t *testing.T, p string) { write(t, p, Encode(key, 6, farFuture)) }, t0, true},
		{"symlink to a genuine far-future record", func(t *testing.T, p string) {
			other := filepath.Join(t.TempDir(), "elsewhere")
			write(t, other, Encode(key, 5, farFuture))
			if err := os.Symlink(other, p); err != nil {
				t.Fatal(err)
			}
		}, t0, true},
		{"FIFO (would hang a plain read)", func(t *testing.T, p string) {
			if err := unix.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, t0, true},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, t0, true},
	}
	for name, wk := range workerKeys(t) {
		cases = append(cases, tc{"far-future record MACed with " + name, func(t *testing.T, p string) { write(t, p, Encode(wk, 5, farFuture)) }, t0, true})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			r := Records{Dir: dir, Key: key}
			if err := r.Save(4, genuine); err != nil {
				t.Fatal(err)
			}
			c.slotB(t, filepath.Join(dir, SlotFile(1)))
			done := make(chan struct{})
			var (
				s       State
				ignored []error
				lerr    error
			)
			go func() {
				defer close(done)
				_, s, ignored, lerr = r.Load()
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Load hung")
			}
			if lerr != nil {
				t.Fatal(lerr)
			}
			if !s.T.Equal(c.wantT) {
				t.Fatalf("T %v, want %v", s.T, c.wantT)
			}
			if (len(ignored) > 0) != c.ignored {
				t.Fatalf("ignored %v, want ignored=%v", ignored, c.ignored)
			}
		})
	}
}

// TestRecordsTornNewest: the newest slot torn (a power cut while PID 1
// wrote it) falls back to the previous record; both gone is ErrNoRecord.
func TestRecordsTornNewest(t *testing.T) {
	key, _ := Key(testMaster())
	dir := t.TempDir()
	r := Records{Dir: dir, Key: key}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for g := uint64(0); g < 4; g++ {
		if err := r.Save(g, State{T: t0.Add(time.Duration(g) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	gen, s, _, err := r.Load()
	if err != nil || gen != 3 || !s.T.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("gen %d T %v err %v", gen, s.T, err)
	}
	write(t, filepath.Join(dir, SlotFile(1)), Encode(key, 3, s)[:RecordLen-1])
	gen, s, ignored, err := r.Load()
	if err != nil || gen != 2 || !s.T.Equal(t0.Add(2*time.Hour)) || len(ignored) != 1 {
		t.Fatalf("after a torn write: gen %d T %v ignored %v err %v", gen, s.T, ignored, err)
	}
	write(t, filepath.Join(dir, SlotFile(0)), nil)
	if _, _, _, err := r.Load(); err == nil {
		t.Fatal("no authentic record, but Load found one")
	}
}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
