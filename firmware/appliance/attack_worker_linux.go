//go:build linux && holdfast_attack_suite

package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
)

// The worker adversary (issue 15) is code running with the worker's exact
// credentials and keys: uid and gid 1000, no capabilities, an empty
// bounding set, no_new_privs (caps.BecomeAndExec, as the worker's own
// become- stage), the store subkeys the worker gets in its "init" message,
// the store directory of every data disk and one sealer socket per disk,
// as the worker has. It plants on every disk what issue 15 lists (a
// forged index cache, a sealed pack with a lying trailer, FIFOs, symlinks,
// sparse and hard-linked files, junk) and the next boots must shrug it
// off. Only a TEST image has it.

// testOnlySealers starts one more sealer per store at lockdown (the
// sealer needs CAP_LINUX_IMMUTABLE, which PID 1 gives up at the end of
// lockdown): the worker adversary's, serving the same root as the
// worker's. PID 1 keeps the client ends in a.advSealers.
func (a *appliance) testOnlySealers(stores []dataStore) {
	socks := map[string]*os.File{}
	for _, d := range stores {
		ours, sealerEnd, err := roles.Socketpair("adversary sealer")
		if err != nil {
			a.log.Error("TEST IMAGE: no sealer for the worker adversary", "disk", d.Name, "error", err)
			continue
		}
		if _, err := fmt.Fprintf(ours, "%s\n", d.Dir); err != nil {
			a.log.Error("TEST IMAGE: no sealer for the worker adversary", "disk", d.Name, "error", err)
			ours.Close()
			sealerEnd.Close()
			continue
		}
		_, err = a.spawnWith("sealer", unix.CLONE_NEWNS, []string{roles.SealerStoreEnv + "=" + d.Dir}, sealerEnd)
		sealerEnd.Close()
		if err != nil {
			a.log.Error("TEST IMAGE: no sealer for the worker adversary", "disk", d.Name, "error", err)
			ours.Close()
			continue
		}
		socks[d.Dir] = ours
	}
	a.mu.Lock()
	a.advSealers = socks
	a.mu.Unlock()
}

// attackWorker is the console command attack-worker: PID 1 starts the
// attack program's worker mode (firmware/cmd/holdfast-attack/worker_linux.go)
// with the worker's uid and gid (Credential: after lockdown nothing but a
// test image's PID 1 can still change ids, and every bounding set is
// empty, so the program holds no capability); it checks that it is
// exactly the worker before it reads the key or touches a disk.
// The worker's store keys arrive on its stdin, one line of JSON (never the
// master key, which the worker does not hold either); the sealer sockets
// are fds 3.. in the order of -stores.
func (a *appliance) attackWorker(ctx context.Context, _ console.Command, out io.Writer) error {
	a.mu.Lock()
	locked, master, storeID := a.locked, append([]byte(nil), a.master...), a.storeID
	stores := append([]dataStore(nil), a.stores...)
	socks := a.advSealers
	a.mu.Unlock()
	if !locked || len(stores) == 0 || len(master) == 0 {
		return errors.New("the worker adversary runs only after lockdown, with a store")
	}
	keys, err := roleKeys(master, storeID, false)
	if err != nil {
		return fmt.Errorf("worker adversary: %w", err)
	}
	keyLine, err := json.Marshal(keys)
	if err != nil {
		return fmt.Errorf("worker adversary: %w", err)
	}
	var dirs, names []string
	var files []*os.File
	for _, d := range stores {
		f := socks[d.Dir]
		if f == nil {
			return fmt.Errorf("worker adversary: no sealer socket for %s", d.Name)
		}
		dirs, names, files = append(dirs, d.Dir), append(names, d.Name), append(files, f)
	}
	args := []string{"worker-adversary", "-in-vm", "-uid", strconv.Itoa(roles.WorkerUID),
		"-stores", strings.Join(dirs, ","), "-disks", strings.Join(names, ",")}
	a.log.Warn("TEST IMAGE: starting the worker adversary (uid 1000, the worker's keys)", "args", strings.Join(args, " "))
	cctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, AttackBinary, args...)
	cmd.Env = []string{"PATH=/bin:/sbin"}
	cmd.Stdin = strings.NewReader(string(keyLine) + "\n")
	cmd.Stdout = crlfWriter{out}
	cmd.Stderr = crlfWriter{out}
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: roles.WorkerUID, Gid: roles.WorkerUID, Groups: []uint32{}}}
	if err := a.runChild(cmd); err != nil {
		return fmt.Errorf("worker adversary: %w", err)
	}
	return nil
}
