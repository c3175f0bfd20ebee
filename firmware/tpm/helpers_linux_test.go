package tpm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/swtpm"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// bootState is what the firmware, systemd-stub and init measure on a boot.
type bootState struct {
	secureBoot string // PCR 7
	uki        string // PCR 11
	config     string // PCR 15 (ExtendConfigPCR)
}

var boot1 = bootState{secureBoot: "secure boot on, holdfast db", uki: "holdfast UKI 1.0", config: "cfg A"}

func digest(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// machine is an appliance with a (software) TPM across boots.
type machine struct {
	t      testing.TB
	state  string // swtpm state directory: the TPM's NV
	keyDir string // the config partition
	sim    *swtpm.Sim
	tpm    *tpm.TPM
	log    hclog.Logger
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func newMachine(t testing.TB, bs bootState) *machine {
	t.Helper()
	m := &machine{t: t, state: stateDir(t), keyDir: t.TempDir(), log: testLogger(t)}
	t.Cleanup(func() {
		if m.sim != nil {
			if m.tpm != nil {
				m.tpm.Close()
			}
			m.sim.Kill()
		}
	})
	m.boot(bs)
	return m
}

// stateDir is a TPM state directory; swtpm cannot take a path with a
// comma, which t.TempDir's name may hold.
func stateDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "tpmstate-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// boot powers the TPM on and measures bs as firmware, stub and init would.
func (m *machine) boot(bs bootState) {
	m.t.Helper()
	ctx := ctxT(m.t)
	sim, err := swtpm.Start(ctx, swtpm.Options{StateDir: m.state, Logger: m.log.Named("swtpm")})
	if errors.Is(err, swtpm.ErrNotInstalled) {
		m.t.Fatalf("%v", err)
	}
	if err != nil {
		m.t.Fatalf("start swtpm: %v", err)
	}
	m.sim = sim
	m.tpm, err = tpm.Dial(ctx, "unix", sim.SocketPath(), m.log)
	if err != nil {
		m.t.Fatalf("dial swtpm: %v", err)
	}
	m.measure(bs)
}

func (m *machine) measure(bs bootState) {
	m.t.Helper()
	ctx := ctxT(m.t)
	for _, e := range []struct {
		pcr int
		s   string
	}{{tpm.PCRSecureBoot, bs.secureBoot}, {tpm.PCRKernel, bs.uki}} {
		if e.s == "" {
			continue
		}
		if err := m.tpm.ExtendPCR(ctx, e.pcr, digest(e.s)); err != nil {
			m.t.Fatalf("measure: %v", err)
		}
	}
	if bs.config != "" {
		if err := m.tpm.ExtendConfigPCR(ctx, digest(bs.config)); err != nil {
			m.t.Fatalf("measure config: %v", err)
		}
	}
}

// shutdown is an orderly power-off: TPM2_Shutdown(STATE), then swtpm exits.
func (m *machine) shutdown() {
	m.t.Helper()
	ctx := ctxT(m.t)
	if err := m.tpm.Shutdown(ctx); err != nil {
		m.t.Fatalf("shutdown: %v", err)
	}
	m.tpm.Close()
	if err := m.sim.Stop(ctx); err != nil {
		m.t.Fatalf("stop swtpm: %v", err)
	}
	m.sim = nil
}

// shutdownClearBoot is a cold boot as Linux does it: the kernel's TPM
// driver sends TPM2_Shutdown(CLEAR) at power-off, so the next Startup is a
// TPM Reset (resetCount +1) after an orderly shutdown (safe = YES).
func (m *machine) shutdownClearBoot(bs bootState) {
	m.t.Helper()
	ctx := ctxT(m.t)
	if err := m.tpm.ShutdownClear(ctx); err != nil {
		m.t.Fatalf("shutdown(clear): %v", err)
	}
	m.tpm.Close()
	if err := m.sim.Stop(ctx); err != nil {
		m.t.Fatalf("stop swtpm: %v", err)
	}
	m.sim = nil
	m.boot(bs)
}

// powerCut kills swtpm without TPM2_Shutdown.
func (m *machine) powerCut() {
	m.t.Helper()
	m.tpm.Close()
	if err := m.sim.Kill(); err != nil {
		m.t.Fatalf("kill swtpm: %v", err)
	}
	m.sim = nil
}

func (m *machine) reboot(bs bootState) {
	m.t.Helper()
	m.shutdown()
	m.boot(bs)
}

// freshTPM replaces the TPM with a new one (new state: new seeds).
func (m *machine) freshTPM(bs bootState) {
	m.t.Helper()
	m.shutdown()
	m.state = stateDir(m.t)
	m.boot(bs)
}

func (m *machine) unsealer(p tpm.Policy) *tpm.Unsealer {
	return &tpm.Unsealer{TPM: m.tpm, Dir: m.keyDir, Policy: p}
}

// snapshotDir returns name -> content of every file below dir.
func snapshotDir(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

func sameDir(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}

func names(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// storeBase returns a directory on a filesystem with inode flags whose
// cleanup clears the flags first.
func storeBase(t testing.TB) string {
	return filepath.Dir(storetest.Dir(t))
}
