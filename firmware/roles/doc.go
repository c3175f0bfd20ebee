// Package roles starts and becomes the appliance's child processes, the
// roles: the worker, one sealer per data disk, the opt-in export and the
// DHCP client. It is the launcher on both sides of the exec:
//
//   - PID 1's side (firmware/appliance) asks Command for the exec.Cmd of a
//     role: PID 1's own binary re-executed with Env set to "become-ROLE";
//   - the child's side (Run, called by firmware/cmd/holdfast-init when Env
//     is set) first runs the become- stage as root (a mount namespace of
//     its own where the role needs one, then caps.BecomeIdentityAndExec:
//     the role's uid, gid and groups, the bounding set emptied but for the
//     role's capabilities, no_new_privs) and then, re-executed, the role.
//
// The small roles live here (sealer_linux.go, export_linux.go,
// dhcp_linux.go); the worker, the untrusted side of the control protocol,
// is package firmware/worker, which Run calls through a function so that
// this package, which PID 1 imports, imports nothing of the worker.
//
// Limits: a role is started only during lockdown, while PID 1 still holds
// CAP_SETUID, CAP_SETGID and CAP_SETPCAP; a role that dies stays dead
// until the next boot (PID 1 alerts).
package roles
