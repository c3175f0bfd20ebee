package qemu

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/boards"
)

// TestProbeKVM runs the probe against QEMU wrappers that fail under KVM in
// the two ways seen on real hosts, and one that works: each answer is
// right, says what happened in true words, comes within the timeout, and
// leaves no QEMU running. Last it probes this host's real KVM and logs
// the verdict (whatever it is: the host decides).
func TestProbeKVM(t *testing.T) {
	b, err := boards.Load("qemu-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckTools(b); err != nil {
		t.Fatalf("%v", err)
	}
	cache, err := boards.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	kf, err := boards.FetchKernel(t.Context(), hclog.NewNullLogger(), b, cache)
	if err != nil {
		t.Fatalf("kernel: %v", err)
	}
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		want    string // "" for success, else a substring of the error
		exited  bool
	}{
		{"exits at once", WrapperExits, 30 * time.Second, "QEMU exited under KVM after", true},
		{"silent", WrapperSilent, 5 * time.Second, "no kernel banner on the serial line under KVM for 5s", false},
		{"works", WrapperTCG, 90 * time.Second, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wb := *b
			q := *b.QEMU
			q.Binary, err = WriteWrapper(t.TempDir(), b, tc.script)
			if err != nil {
				t.Fatal(err)
			}
			wb.QEMU = &q
			start := time.Now()
			err := ProbeKVM(t.Context(), &wb, kf.Image, tc.timeout)
			took := time.Since(start)
			t.Logf("probe: %v after %s", err, took.Round(time.Millisecond))
			if took > tc.timeout+5*time.Second {
				t.Errorf("probe took %s with a timeout of %s", took, tc.timeout)
			}
			if left := Running(ProbeName); len(left) > 0 {
				t.Errorf("left running after the probe: %q", left)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("a guest that prints its banner failed the probe: %v", err)
				}
				return
			}
			var ae *AccelError
			if !errors.As(err, &ae) || ae.Exited != tc.exited || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("probe error %v (%T): want an *AccelError with Exited=%v saying %q", err, err, tc.exited, tc.want)
			}
			if tc.exited && !strings.Contains(err.Error(), "failed to set MSR") {
				t.Errorf("the error does not carry QEMU's stderr: %v", err)
			}
		})
	}
	t.Run("this host", func(t *testing.T) {
		if !KVMUsable() {
			t.Logf("/dev/kvm cannot be opened here: auto runs TCG without probing")
			return
		}
		err := ProbeKVM(t.Context(), b, kf.Image, ProbeTimeout)
		t.Logf("KVM on this host: %v", err)
		if err != nil && !errors.As(err, new(*AccelError)) {
			t.Errorf("probe failed for another reason than the guest: %v", err)
		}
		if left := Running(ProbeName); len(left) > 0 {
			t.Errorf("left running after the probe: %q", left)
		}
	})
}

func TestAccelFromEnv(t *testing.T) {
	for _, tc := range []struct{ env, want, err string }{
		{"", AccelAuto, ""},
		{"auto", AccelAuto, ""},
		{"kvm", AccelKVM, ""},
		{" tcg ", AccelTCG, ""},
		{"hvf", "", `HOLDFAST_ACCEL="hvf": want auto, kvm or tcg`},
	} {
		t.Setenv(AccelEnv, tc.env)
		got, err := AccelFromEnv()
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%s=%q: got %q, %v; want %q, %q", AccelEnv, tc.env, got, err, tc.want, tc.err)
		}
	}
}

func TestProbeCache(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sub", "qemu-x86_64")
	if _, ok := readProbeCache(f, "k"); ok {
		t.Fatal("a missing cache file answered")
	}
	if err := writeProbeCache(f, "k", "QEMU exited under KVM after 0.1 s: boom"); err != nil {
		t.Fatal(err)
	}
	if v, ok := readProbeCache(f, "k"); !ok || v != "QEMU exited under KVM after 0.1 s: boom" {
		t.Errorf("cached verdict: %q %v", v, ok)
	}
	if _, ok := readProbeCache(f, "other host boot"); ok {
		t.Error("a verdict for another key answered")
	}
}
