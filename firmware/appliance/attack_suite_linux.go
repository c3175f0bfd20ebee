//go:build linux && holdfast_attack_suite

package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/disks"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
)

// AttackBinary is where a test image carries the attack program.
const AttackBinary = "/bin/holdfast-attack"

// testOnlyCommand gives a TEST image (built with the holdfast_attack_suite
// tag, images.Options.AttackSuite) its `attack` command (and
// `attack-worker`, attack_worker_linux.go): PID 1 starts the
// attack program as uid 0 after lockdown, with what any program started
// then gets (pid1Bounding: nothing), serves its requests to run parts of
// it as other uids (serveAttackBroker) and streams its lines to the
// console. A release
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
	ds, err := a.scanAll()
	if err != nil {
		return fmt.Errorf("attack suite: disks: %w", err)
	}
	a.mu.Lock()
	locked, dir := a.locked, a.storeDir
	var others []string
	for _, d := range a.stores {
		if d.Dir != dir {
			others = append(others, d.Dir)
		}
	}
	var sealer, worker, export int
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
		case "holdfast-export":
			export = c.Process.Pid
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
		"-worker-pid", strconv.Itoa(worker), "-owner-uid", strconv.Itoa(roles.WorkerUID),
		"-export-pid", strconv.Itoa(export), "-other-stores", strings.Join(others, ","), "-roles", attackRoles(),
		"-modules-dir", filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:])), "-mke2fs", a.o.MkE2fs}
	a.log.Warn("TEST IMAGE: starting the attack suite as uid 0", "args", strings.Join(args, " "))
	cctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	ours, theirs, err := roles.Socketpair("attack-broker")
	if err != nil {
		return fmt.Errorf("attack suite: %w", err)
	}
	defer ours.Close()
	go a.serveAttackBroker(cctx, ours)
	cmd := exec.CommandContext(cctx, AttackBinary, args...)
	cmd.Env = []string{"PATH=/bin:/sbin", AttackBrokerEnv + "=3"}
	cmd.Stdout = crlfWriter{out}
	cmd.Stderr = crlfWriter{out}
	cmd.ExtraFiles = []*os.File{theirs}
	err = a.runChild(cmd)
	theirs.Close()
	if err != nil {
		return fmt.Errorf("attack suite: %w", err)
	}
	return nil
}

// attackRoles is the -roles flag of the attack program: each role's
// identity (roles.IDs), NAME=UID:GID[:GROUP...].
func attackRoles() string {
	var parts []string
	for _, r := range []string{"worker", "sealer", "export", "dhcp"} {
		id := roles.IDs(r)
		s := fmt.Sprintf("%s=%d:%d", r, id.UID, id.GID)
		for _, g := range id.Groups {
			s += fmt.Sprintf(":%d", g)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// A test image's PID 1 keeps CAP_SETUID and CAP_SETGID in its permitted
// set (never in its bounding set, so nothing it starts inherits them): the
// attack broker below needs them. A release PID 1 keeps neither.
func testOnlyPermitted() []int { return []int{unix.CAP_SETUID, unix.CAP_SETGID} }

// AttackBrokerEnv names the descriptor of the attack broker in the attack
// program's environment.
const AttackBrokerEnv = "HOLDFAST_ATTACK_BROKER_FD"

// BrokerRequest asks the attack broker to run the attack program with
// Args as Uid:Gid with supplementary Groups (at most 8; a role's).
type BrokerRequest struct {
	Uid, Gid  int
	Groups    []int
	Args      []string
	TimeoutMS int64
}

// BrokerReply is what the run gave.
type BrokerReply struct {
	Stdout []byte
	Stderr string
	Err    string // start or wait error
}

// maxBrokerOutput bounds what the broker keeps of a child's output.
const maxBrokerOutput = 16 << 20

// serveAttackBroker runs, one at a time, the attack program as the uid
// and gid it is asked for. The attack program itself runs as uid 0 with
// no capability: since lockdown nothing on the box can change its uid,
// so its owner techniques (the intruder who took over the worker) and its
// every-identity techniques (code running as each uid that owns
// something) are started here, by a TEST image's PID 1, as if the
// intruder were already that uid. Each child inherits PID 1's empty
// bounding set: it holds no capability whatever its uid.
func (a *appliance) serveAttackBroker(ctx context.Context, conn *os.File) {
	dec := json.NewDecoder(io.LimitReader(conn, 64<<20))
	enc := json.NewEncoder(conn)
	for {
		var req BrokerRequest
		if err := dec.Decode(&req); err != nil {
			return
		}
		var rep BrokerReply
		switch {
		case req.Uid < 0 || req.Uid > 65535 || req.Gid < 0 || req.Gid > 65535:
			rep.Err = fmt.Sprintf("uid %d gid %d out of range", req.Uid, req.Gid)
		case len(req.Groups) > 8 || slices.ContainsFunc(req.Groups, func(g int) bool { return g < 0 || g > 65535 }):
			rep.Err = fmt.Sprintf("groups %v out of range", req.Groups)
		case req.TimeoutMS <= 0 || req.TimeoutMS > int64(20*time.Minute/time.Millisecond):
			rep.Err = fmt.Sprintf("timeout %d ms out of range", req.TimeoutMS)
		default:
			rep = a.brokerRun(ctx, req)
		}
		if err := enc.Encode(rep); err != nil {
			return
		}
	}
}

func (a *appliance) brokerRun(ctx context.Context, req BrokerRequest) BrokerReply {
	cctx, cancel := context.WithTimeout(ctx, time.Duration(req.TimeoutMS)*time.Millisecond)
	defer cancel()
	cmd := exec.CommandContext(cctx, AttackBinary, req.Args...)
	cmd.Args[0] = "holdfast-attack"
	cmd.Env = []string{"PATH=/bin:/sbin"}
	cmd.Dir = "/"
	groups := []uint32{}
	for _, g := range req.Groups {
		groups = append(groups, uint32(g))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(req.Uid), Gid: uint32(req.Gid), Groups: groups}}
	var stdout, stderr capped
	stdout.max, stderr.max = maxBrokerOutput, 64<<10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	rep := BrokerReply{}
	if err := a.runChild(cmd); err != nil {
		rep.Err = err.Error()
	}
	rep.Stdout, rep.Stderr = stdout.b.Bytes(), stderr.b.String()
	return rep
}

// capped keeps the first max bytes written to it.
type capped struct {
	b   bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// crlfWriter ends the program's lines with CR LF for the serial line.
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(c.w, nl(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
