package qemu

import (
	"context"
	"errors"
	"os"
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

// TestStartFallback starts a VM through wrappers that fail under KVM,
// with the probe saying KVM works, and an empty boot disk (no guest is
// needed to see the runner's decisions): Start must come back with a TCG
// VM, within the silence limit, and Stop must leave nothing running. Before
// the log follower started with QEMU, a QEMU that exited before binding
// its serial socket made Stop wait for ever (the TestAttackSuite hang).
func TestStartFallback(t *testing.T) {
	b, err := boards.Load("qemu-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckTools(b); err != nil {
		t.Fatalf("%v", err)
	}
	for _, tc := range []struct{ name, script, want string }{
		{"exits at once", WrapperExits, "QEMU exited under KVM after"},
		{"silent", WrapperSilent, "no serial output under KVM for 3s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wb := *b
			q := *b.QEMU
			q.Binary, err = WriteWrapper(t.TempDir(), b, tc.script)
			if err != nil {
				t.Fatal(err)
			}
			wb.QEMU = &q
			img := filepath.Join(t.TempDir(), "empty.img")
			if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			state := t.TempDir()
			var logs strings.Builder
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			v, err := Start(ctx, Config{
				Board: &wb, Image: img, StateDir: state, Accel: AccelAuto, DataDiskSize: 16 << 20,
				KVMProbe:   func(context.Context, Config) error { return nil },
				KVMSilence: 3 * time.Second,
				Log:        hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}),
			})
			t.Logf("runner log:\n%s", logs.String())
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			if v.Accel != AccelTCG || !strings.Contains(logs.String(), tc.want) {
				t.Errorf("accel %s; want tcg and a log that says %q", v.Accel, tc.want)
			}
			if _, err := os.Stat(v.SerialSocket); err != nil {
				t.Errorf("serial socket after Start: %v", err)
			}
			if err := v.Stop(ctx); err != nil {
				t.Errorf("Stop: %v", err)
			}
			if left := Running(state); len(left) > 0 {
				t.Errorf("left running after Stop: %q", left)
			}
		})
	}
}
