package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/fsflag"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// storeTestDir returns a temporary directory on a filesystem with inode
// flags; its sealed files are unflagged again before it is removed.
func storeTestDir(t *testing.T) string {
	return filepath.Dir(storetest.Dir(t))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var snapIDRe = regexp.MustCompile(`snapshot (\d{8}T\d{6}Z-[0-9a-f]{8}) committed`)

// mustRun runs a command that must exit with want.
func mustRun(t *testing.T, want int, args ...string) (string, string) {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	if code != want {
		t.Fatalf("holdfast %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out, errOut
}

func committedID(t *testing.T, out string) string {
	t.Helper()
	m := snapIDRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no committed snapshot ID in %q", out)
	}
	return m[1]
}

const awkward = "data/awk ward\t\xff.txt"

func TestStoreLifecycle(t *testing.T) {
	base := storeTestDir(t)
	st := filepath.Join(base, "store")
	key := filepath.Join(base, "hf.key")
	data := filepath.Join(base, "data")
	writeFile(t, filepath.Join(data, "a.txt"), "alpha\n")
	writeFile(t, filepath.Join(data, "sub", "b.txt"), strings.Repeat("bravo ", 100000))
	writeFile(t, filepath.Join(base, awkward), "awkward content")

	out, _ := mustRun(t, exitOK, "store", "init", st, "--key-file", key)
	if !strings.Contains(out, "created key file "+key) || !strings.Contains(out, "initialized store "+st) {
		t.Errorf("init output: %q", out)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	keyBefore, _ := os.ReadFile(key)

	// A second init refuses the non-empty directory and keeps the key.
	_, errOut := mustRun(t, exitFailure, "store", "init", st, "--key-file", key)
	if !strings.Contains(errOut, "not empty") {
		t.Errorf("second init stderr: %q", errOut)
	}
	if keyAfter, _ := os.ReadFile(key); !bytes.Equal(keyBefore, keyAfter) {
		t.Error("second init changed the key file")
	}

	start := time.Now()
	out, _ = mustRun(t, exitOK, "store", "put", st, "--key-file", key, "--source", "laptop", "--retain", "30d", data)
	id1 := committedID(t, out)
	if !strings.Contains(out, "3 objects") || !strings.Contains(out, "complete yes") {
		t.Errorf("put output: %q", out)
	}

	// The snapshot records retain-until = now + 30 days.
	s, err := store.Open(context.Background(), st, store.KeyFile(key), store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := s.Snapshots()
	s.Close()
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v %v", snaps, err)
	}
	ru := snaps[0].Retention.RetainUntil
	if lo, hi := start.AddDate(0, 0, 30).Add(-time.Second), time.Now().AddDate(0, 0, 30).Add(time.Second); ru.Before(lo) || ru.After(hi) {
		t.Errorf("retain-until %s not within [%s, %s]", ru, lo, hi)
	}
	if snaps[0].Retention.LegalHold {
		t.Error("legal hold set without --legal-hold")
	}

	writeFile(t, filepath.Join(data, "a.txt"), "alpha changed\n")
	out, _ = mustRun(t, exitOK, "store", "put", st, "--key-file", key, "--source", "laptop", "--retain", "1d", "--legal-hold", data)
	id2 := committedID(t, out)
	if !strings.Contains(out, "legal hold yes") {
		t.Errorf("put --legal-hold output: %q", out)
	}

	out, _ = mustRun(t, exitOK, "store", "ls", st, "--key-file", key)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], id1) || !strings.HasPrefix(lines[2], id2) {
		t.Fatalf("ls output:\n%s", out)
	}
	if f := strings.Fields(lines[2]); f[1] != "laptop" || f[3] != "3" || f[6] != "yes" || f[7] != "yes" {
		t.Errorf("ls row for %s: %q", id2, f)
	}

	out, _ = mustRun(t, exitOK, "store", "ls", st, "--key-file", key, id1)
	alphaSum := sha256.Sum256([]byte("alpha\n"))
	for _, want := range []string{"data/a.txt", "data/sub/b.txt", `"data/awk ward\t\xff.txt"`, "3 objects", hex.EncodeToString(alphaSum[:])} {
		if !strings.Contains(out, want) {
			t.Errorf("ls %s output lacks %q:\n%s", id1, want, out)
		}
	}

	// cat gives back the exact bytes, by raw key and by the quoted form ls shows.
	for _, tc := range []struct{ id, key, want string }{
		{id1, "data/a.txt", "alpha\n"},
		{id2, "data/a.txt", "alpha changed\n"},
		{id1, "data/sub/b.txt", strings.Repeat("bravo ", 100000)},
		{id1, awkward, "awkward content"},
		{id2, `"data/awk ward\t\xff.txt"`, "awkward content"},
	} {
		out, _ := mustRun(t, exitOK, "store", "cat", st, "--key-file", key, tc.id, tc.key)
		if out != tc.want {
			t.Errorf("cat %s %q: got %d bytes, want %d", tc.id, tc.key, len(out), len(tc.want))
		}
	}
	_, errOut = mustRun(t, exitFailure, "store", "cat", st, "--key-file", key, id1, "data/nope")
	if !strings.Contains(errOut, "not found") {
		t.Errorf("cat of a missing object: %q", errOut)
	}
	mustRun(t, exitFailure, "store", "cat", st, "--key-file", key, "20990101T000000Z-00000000", "data/a.txt")
	mustRun(t, exitFailure, "store", "ls", st, "--key-file", key, "not-a-snapshot-id")

	out, _ = mustRun(t, exitOK, "store", "verify", st, "--key-file", key)
	if !strings.Contains(out, "snapshots  2") || !strings.Contains(out, "objects    6") || !strings.Contains(out, "problems   0") || !strings.HasSuffix(out, "OK\n") {
		t.Errorf("verify output:\n%s", out)
	}

	out, _ = mustRun(t, exitOK, "store", "prune", st, "--key-file", key, "--dry-run")
	if !strings.Contains(out, "dry run") || !strings.Contains(out, "would remove 0 expired") || !strings.Contains(out, "kept       2 snapshot(s)") {
		t.Errorf("prune --dry-run output:\n%s", out)
	}

	// A wrong key opens nothing.
	other := filepath.Join(base, "other.key")
	if err := store.CreateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	_, errOut = mustRun(t, exitFailure, "store", "ls", st, "--key-file", other)
	if !strings.Contains(errOut, store.ErrWrongKey.Error()) {
		t.Errorf("wrong key stderr: %q", errOut)
	}
}

func TestStorePutResumesSameSource(t *testing.T) {
	base := storeTestDir(t)
	st := filepath.Join(base, "store")
	key := filepath.Join(base, "hf.key")
	data := filepath.Join(base, "data")
	writeFile(t, filepath.Join(data, "a.txt"), "alpha")
	mustRun(t, exitOK, "store", "init", st, "--key-file", key)

	// Leave one snapshot of each of two sources in progress, as a crash would.
	ctx := context.Background()
	s, err := store.Open(ctx, st, store.KeyFile(key), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(48 * time.Hour)
	mine, err := s.Begin(ctx, store.BeginOptions{Source: "laptop", RetainUntil: until})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := s.Begin(ctx, store.BeginOptions{Source: "server", RetainUntil: until})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	out, _ := mustRun(t, exitOK, "store", "ls", st, "--key-file", key)
	if !strings.Contains(out, "in progress: "+mine.ID()) || !strings.Contains(out, "in progress: "+theirs.ID()) {
		t.Errorf("ls does not show both snapshots in progress:\n%s", out)
	}

	out, errOut := mustRun(t, exitOK, "store", "put", st, "--key-file", key, "--source", "laptop", "--retain", "30d", data)
	if !strings.Contains(out, "resumed interrupted snapshot "+mine.ID()) {
		t.Errorf("put did not resume %s:\n%s", mine.ID(), out)
	}
	if !strings.Contains(errOut, "resuming interrupted snapshot") {
		t.Errorf("resume not logged: %q", errOut)
	}
	if got := committedID(t, out); got != mine.ID() {
		t.Errorf("committed %s, want the resumed %s", got, mine.ID())
	}

	s, err = store.Open(ctx, st, store.KeyFile(key), store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.Interrupted()
	if err != nil || len(in) != 1 || in[0].ID != theirs.ID() {
		t.Errorf("in progress after put: %+v %v, want only %s", in, err, theirs.ID())
	}
	snaps, err := s.Snapshots()
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %+v %v", snaps, err)
	}
	// The resumed snapshot keeps the retention recorded when it began.
	if got := snaps[0].Retention.RetainUntil; got.UnixNano() != until.UnixNano() {
		t.Errorf("retain-until %s, want the original %s", got, until)
	}
}

func TestStorePutIncomplete(t *testing.T) {
	base := storeTestDir(t)
	st := filepath.Join(base, "store")
	key := filepath.Join(base, "hf.key")
	data := filepath.Join(base, "data")
	writeFile(t, filepath.Join(data, "a.txt"), "alpha")
	if err := os.Symlink("a.txt", filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}
	mustRun(t, exitOK, "store", "init", st, "--key-file", key)
	out, errOut := mustRun(t, exitFailure, "store", "put", st, "--key-file", key, "--source", "s", "--retain", "1d", data)
	committedID(t, out)
	if !strings.Contains(out, "complete no") || !strings.Contains(out, "data/link") || !strings.Contains(errOut, "incomplete") {
		t.Errorf("incomplete put:\nstdout: %s\nstderr: %s", out, errOut)
	}
	out, _ = mustRun(t, exitOK, "store", "ls", st, "--key-file", key)
	if f := strings.Fields(strings.Split(out, "\n")[1]); f[len(f)-1] != "no" {
		t.Errorf("ls shows the incomplete snapshot as complete: %q", f)
	}
}

func TestStoreVerifyDamage(t *testing.T) {
	base := storeTestDir(t)
	st := filepath.Join(base, "store")
	key := filepath.Join(base, "hf.key")
	data := filepath.Join(base, "data")
	writeFile(t, filepath.Join(data, "a.txt"), strings.Repeat("payload ", 1000))
	mustRun(t, exitOK, "store", "init", st, "--key-file", key)
	out, _ := mustRun(t, exitOK, "store", "put", st, "--key-file", key, "--source", "s", "--retain", "1d", data)
	id := committedID(t, out)

	packs, err := filepath.Glob(filepath.Join(st, "packs", "*", "*"))
	if err != nil || len(packs) != 1 {
		t.Fatalf("packs: %v %v", packs, err)
	}
	// The kernel refuses to change a sealed pack...
	if f, err := os.OpenFile(packs[0], os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Fatal("a sealed pack opened for writing")
	}
	// ...so flip a byte in the first chunk the way only a raw-disk attacker could.
	if err := fsflag.Clear(packs[0], fsflag.Immutable); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	raw[40] ^= 0xff
	if err := os.WriteFile(packs[0], raw, 0o600); err != nil {
		t.Fatal(err)
	}

	out, errOut := mustRun(t, exitFailure, "store", "verify", st, "--key-file", key)
	for _, want := range []string{"damaged snapshot: " + id, "damaged object: " + id + " data/a.txt", "not sealed immutable", "does not match its name"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "holdfast: verify: ") {
		t.Errorf("verify stderr: %q", errOut)
	}
	_, errOut = mustRun(t, exitFailure, "store", "cat", st, "--key-file", key, id, "data/a.txt")
	if !strings.Contains(errOut, "integrity") {
		t.Errorf("cat of a damaged object: %q", errOut)
	}
}
