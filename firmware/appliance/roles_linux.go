package appliance

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
)

// PID 1 starts the roles (firmware/roles has the process table: each
// role's uid, groups, capabilities, keys and mounts) during lockdown,
// before it empties its own bounding set (limitPID1): after that no
// process on the box holds CAP_SETUID, CAP_SETGID or CAP_SETPCAP, and
// spawnWith refuses (with an alert) to start a role, since its become-
// stage could not change its uid. A role that dies stays dead until the
// next boot.

// spawn starts a child role with extra files; stderr goes to logOut.
func (a *appliance) spawn(role string, files ...*os.File) (*exec.Cmd, error) {
	return a.spawnWith(role, 0, nil, files...)
}

// spawnWith is spawn with clone flags (a new mount namespace for the
// export and the sealers) and more environment for the become- stage.
func (a *appliance) spawnWith(role string, cloneflags uintptr, env []string, files ...*os.File) (*exec.Cmd, error) {
	a.mu.Lock()
	limited := a.limited
	a.mu.Unlock()
	if limited {
		// The become- stage needs CAP_SETUID, CAP_SETGID and CAP_SETPCAP,
		// which PID 1's bounding set no longer passes on: a role that
		// died is not restarted until the next boot.
		err := fmt.Errorf("role %s not started: after lockdown PID 1 passes no capability on, so no process can change its uid; it runs again at the next boot", role)
		a.alert(alertkind.Appliance, "lockdown: "+err.Error(), "role", role)
		return nil, err
	}
	exe := a.o.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	// A role's log lines carry what the network sent (keys, errors):
	// quoted, they can neither drive the operator's terminal nor forge a
	// frame.
	cmd := roles.Command(exe, role, cloneflags, env, console.QuoteWriter{W: a.o.LogOutput}, files...)
	if err := a.start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	if role != "dhcp" {
		a.mu.Lock()
		a.procs = append(a.procs, cmd)
		a.mu.Unlock()
	}
	return cmd, nil
}

// children are the long-running child processes (worker, sealer).
func (a *appliance) children() []*exec.Cmd {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*exec.Cmd(nil), a.procs...)
}
