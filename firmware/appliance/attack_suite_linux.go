//go:build linux && holdfast_attack_suite

package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/disks"
)

// AttackBinary is where a test image carries the attack program.
const AttackBinary = "/bin/holdfast-attack"

// testOnlyCommand gives a TEST image (built with the holdfast_attack_suite
// tag, images.Options.AttackSuite) its `attack` command (and
// `attack-worker`, attack_worker_linux.go): PID 1 starts the
// attack program as uid 0 after lockdown, with what any program started
// then gets (pid1Bounding), and streams its lines to the console. A release
// init has no such command (attack_suite_off_linux.go).
func (a *appliance) testOnlyCommand(name string) func(context.Context, console.Command, io.Writer) error {
	switch name {
	case "attack":
		return a.attack
	case "attack-worker":
		return a.attackWorker // attack_worker_linux.go
	}
	return nil
}

func (a *appliance) attack(ctx context.Context, _ console.Command, out io.Writer) error {
	// Every disk, the boot medium included (a.disks leaves it out).
	ds, err := disks.Scan(a.o.Board.DataDisks)
	if err != nil {
		return fmt.Errorf("attack suite: disks: %w", err)
	}
	a.mu.Lock()
	locked, dir := a.locked, a.storeDir
	var sealer, worker int
	for _, c := range a.procs {
		if c.Process == nil {
			continue
		}
		switch c.Args[0] {
		case "holdfast-sealer":
			if sealer == 0 { // the worker's, not the worker adversary's
				sealer = c.Process.Pid
			}
		case "holdfast-worker":
			worker = c.Process.Pid
		}
	}
	a.mu.Unlock()
	if !locked || dir == "" {
		return errors.New("the attack suite runs only after lockdown, with a store")
	}
	var data []string
	boot := ""
	for _, d := range ds {
		switch d.State {
		case disks.Boot:
			boot = "/dev/" + d.Name
		case disks.Holdfast, disks.Blank:
			data = append(data, "/dev/"+d.Name)
		}
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	args := []string{"-in-vm", "-store", dir, "-data-disks", strings.Join(data, ","), "-boot-disk", boot,
		"-config-dir", filepath.Join(a.o.RunDir, "config"), "-sealer-pid", strconv.Itoa(sealer),
		"-worker-pid", strconv.Itoa(worker), "-owner-uid", strconv.Itoa(WorkerUID),
		"-modules-dir", filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:])), "-mke2fs", a.o.MkE2fs}
	a.log.Warn("TEST IMAGE: starting the attack suite as uid 0", "args", strings.Join(args, " "))
	cctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, AttackBinary, args...)
	cmd.Env = []string{"PATH=/bin:/sbin"}
	cmd.Stdout = crlfWriter{out}
	cmd.Stderr = crlfWriter{out}
	if err := a.runChild(cmd); err != nil {
		return fmt.Errorf("attack suite: %w", err)
	}
	return nil
}

// crlfWriter ends the program's lines with CR LF for the serial line.
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(c.w, nl(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
