package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestProcessIDs(t *testing.T) {
	d := t.TempDir()
	for pid, status := range map[string]string{
		"1":    "Name:\tinit\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
		"115":  "Name:\tholdfast-worker\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n",
		"200":  "Name:\tx\nUid:\t0\t1001\t0\t0\nGid:\t7\t0\t0\t0\n",
		"self": "Uid:\t4242\t4242\t4242\t4242\n",
	} {
		if err := os.Mkdir(filepath.Join(d, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, pid, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := processIDs(d), []int{0, 7, 1000, 1001}; !slices.Equal(got, want) {
		t.Errorf("processIDs = %v, want %v", got, want)
	}
}

func TestOwnerIDs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test must run as root: it chowns files")
	}
	d := t.TempDir()
	if err := os.Chown(d, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path     string
		uid, gid int
	}{{"a", 1000, 1000}, {"skip/b", 4444, 4444}, {"c/d", 65534, 5}} {
		p := filepath.Join(d, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, f.uid, f.gid); err != nil {
			t.Fatal(err)
		}
	}
	got := ownerIDs(d, []string{filepath.Join(d, "skip")}, 1000)
	if want := []int{0, 5, 1000, 65534}; !slices.Equal(got, want) {
		t.Errorf("ownerIDs = %v, want %v", got, want)
	}
	if got := ownerIDs(d, nil, 1); len(got) != 1 || got[0] != 0 {
		t.Errorf("ownerIDs with a limit of 1 entry = %v, want [0]", got)
	}
}

// TestTryBecome runs as root with every capability (the host): there the
// setresuid technique must see its success, and the thread it changed
// must not leak into the rest of the process.
func TestTryBecome(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test must run as root")
	}
	r := tryBecome(ident{uid: 1000, gid: 1000})
	if r.outcome != outSucceeded || !strings.Contains(r.detail, "setresuid: ok") {
		t.Errorf("tryBecome as root with CAP_SETUID: %v %q, want SUCCEEDED with setresuid: ok", r.outcome, r.detail)
	}
	// Its own ids need no capability: not a success.
	if r := tryBecome(ident{uid: 0, gid: 0}); !strings.Contains(r.detail, "setresuid: ok, but it is already this id") || strings.Contains(r.detail, "setresgid: ok;") {
		t.Errorf("tryBecome(0:0) as root: %v %q, want its own ids noted as no change", r.outcome, r.detail)
	}
	for i := 0; i < 20; i++ {
		done := make(chan int)
		go func() { done <- unix.Getuid() }()
		if uid := <-done; uid != 0 {
			t.Fatalf("a goroutine runs as uid %d after tryBecome: the changed thread was reused", uid)
		}
	}
}

func TestDenied(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false}, {unix.EPERM, true}, {unix.EACCES, true}, {unix.EROFS, true}, {unix.ENOENT, true},
		{fmt.Errorf("open: %w", unix.ENOENT), true}, {unix.EINVAL, false}, {unix.EBUSY, false}, {errors.New("x"), false},
	} {
		if got := denied(tc.err); got != tc.want {
			t.Errorf("denied(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestTally(t *testing.T) {
	tl := tally{}
	for _, err := range []error{unix.ENOENT, unix.EPERM, fmt.Errorf("x: %w", unix.ENOENT), errors.New("odd")} {
		tl.add(err)
	}
	if got, want := tl.String(), "ENOENT x2, EPERM x1, odd x1"; got != want {
		t.Errorf("tally %q, want %q", got, want)
	}
}

// TestIdentityTechniques checks that every identity row names a battery
// that exists and every battery is used.
func TestIdentityTechniques(t *testing.T) {
	used := map[string]bool{}
	n := 0
	for _, tc := range techniques() {
		if tc.cat != "identity" {
			continue
		}
		n++
		b, ok := strings.CutSuffix(tc.name, "-every-identity")
		if !ok {
			t.Errorf("identity technique %s does not end in -every-identity", tc.name)
			continue
		}
		if b == "setresuid" {
			continue
		}
		if _, ok := identityBatteries[b]; !ok {
			t.Errorf("identity technique %s: no battery %q", tc.name, b)
		}
		used[b] = true
	}
	for b := range identityBatteries {
		if !used[b] {
			t.Errorf("battery %s is in no technique", b)
		}
	}
	if n != len(identityBatteries)+1 {
		t.Errorf("%d identity techniques, want %d", n, len(identityBatteries)+1)
	}
}

// TestParseRoles: the -roles flag PID 1 passes, and what it refuses.
func TestParseRoles(t *testing.T) {
	tests := []struct {
		in      string
		want    string // the identities as ident.String gives them
		wantErr bool
	}{
		{"worker=1000:1000,sealer=1001:1001:1000,export=1002:1002:1000,dhcp=1003:1003",
			"1000:1000(worker) 1001:1001+1000(sealer) 1002:1002+1000(export) 1003:1003(dhcp)", false},
		{"", "", false},
		{"worker=1000", "", true},
		{"=1000:1000", "", true},
		{"worker=1000:70000", "", true},
		{"worker=a:b", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			rs, err := parseRoles(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseRoles(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			var got []string
			for _, r := range rs {
				got = append(got, ident{r.uid, r.gid, r.groups, r.name}.String())
			}
			if s := strings.Join(got, " "); s != tt.want {
				t.Fatalf("parseRoles(%q) = %q, want %q", tt.in, s, tt.want)
			}
		})
	}
}
