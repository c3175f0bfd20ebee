package roles

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
	"github.com/holdfast-appliance/holdfast/services/sealer"
)

// After lockdown the appliance is five kinds of process, each role under
// a uid and gid of its own (IDs), so none can signal, ptrace or write
// another's files:
//
//	| process | uid:gid   | groups | capabilities (bounding =   | keys (docs/keys.md)  | mounts          | does                                  |
//	|         |           |        | permitted)                 |                      |                 |                                       |
//	|---------|-----------|--------|----------------------------|----------------------|-----------------|---------------------------------------|
//	| PID 1   | 0:0       | -      | see pid1Permitted in       | master and all       | all             | console, TPM, prune at boot; no       |
//	|         |           |        | firmware/appliance         |                      |                 | network input                         |
//	| worker  | 1000:1000 | none   | none                       | store subkeys        | as PID 1's      | S3 pulls, the store's owner and       |
//	|         |           |        |                            |                      |                 | writer, schedule                      |
//	| sealer  | 1001:1001 | 1000   | CAP_LINUX_IMMUTABLE,       | none                 | all read-only   | sets store flags; reads magics through|
//	|         |           |        | CAP_FOWNER (sealer.        |                      | but its store   | the worker's group, owns nothing      |
//	|         |           |        | Capabilities says why)     |                      |                 |                                       |
//	| export  | 1002:1002 | 1000   | none (CAP_NET_BIND_SERVICE | read-only store      | all read-only,  | read-only S3 over TLS; reads through  |
//	|         |           |        | for a port below 1024)     | subkeys              | no config       | the group (export_linux.go)           |
//	| dhcp    | 1003:1003 | none   | CAP_NET_ADMIN, CAP_NET_RAW | none                 | as PID 1's      | one DHCP exchange at boot, then exits |
//
// The store (on every data disk) is owned by 1000:1000, directories 0750
// and files 0640 (services/store): the group reads, others get nothing.
//
// Each child is PID 1's own binary re-executed with Env set: first as
// root ("become-*"), which calls caps.BecomeAndExec to drop the bounding
// set, change uid and set no_new_privs, then as the role itself. Every
// role is started during lockdown, before PID 1 empties its bounding set
// (limitPID1 in firmware/appliance): after that no process on the box, a role or a uid-0
// program, holds CAP_SETUID, CAP_SETGID or CAP_SETPCAP, and PID 1
// refuses (with an alert) to start a role, since its become- stage could
// not change its uid. A role that dies stays dead until the next boot.

// Env selects a child role of the init binary.
const Env = "HOLDFAST_ROLE"

// The uids of the roles; each role's gid is its uid. The worker's gid is
// the store's group, of which the sealer and the export are members.
const (
	WorkerUID = 1000 // owns the store on every data disk
	SealerUID = 1001
	ExportUID = 1002
	DHCPUID   = 1003
)

// IDs are each role's identity (see the process table above).
func IDs(role string) caps.Identity {
	switch role {
	case "worker":
		return caps.Identity{UID: WorkerUID, GID: WorkerUID}
	case "sealer":
		return caps.Identity{UID: SealerUID, GID: SealerUID, Groups: []int{WorkerUID}}
	case "export":
		return caps.Identity{UID: ExportUID, GID: ExportUID, Groups: []int{WorkerUID}}
	case "dhcp":
		return caps.Identity{UID: DHCPUID, GID: DHCPUID}
	}
	// An unknown role gets nobody's identity and no group.
	return caps.Identity{UID: 65534, GID: 65534}
}

// SealerStoreEnv is the environment of the become-sealer stage: the store
// it serves, the only mount it may write (nothing secret).
const SealerStoreEnv = "HOLDFAST_SEALER_STORE"

// Extra files of the children (after stdin, stdout, stderr).
const (
	FDControl = 3 // worker: control socket to PID 1; sealer and export: the socket PID 1 sends their start on
	FDSealer  = 4 // worker: the first socket to a sealer, one per data disk from here on
)

// Run runs the child role Env names and returns the process exit code.
// worker is the worker role's body (firmware/worker.Run), passed in so
// that this package imports nothing of the worker.
func Run(role string, worker func(hclog.Logger) error) int {
	log := hclog.New(&hclog.LoggerOptions{Name: "holdfast." + role, Output: os.Stderr, Level: hclog.Info, Color: hclog.ColorOff, TimeFormat: "15:04:05.000"})
	err := run(role, log, worker)
	if err != nil {
		log.Error("role failed", "error", err)
		return 1
	}
	return 0
}

func run(role string, log hclog.Logger, worker func(hclog.Logger) error) error {
	// Not dumpable: /proc/PID/fd, /proc/PID/mem and ptrace of this
	// process then need CAP_SYS_PTRACE, which nobody holds after
	// lockdown, so not even uid 1000 can take the sealer's or the
	// worker's sockets from /proc.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("not dumpable: %w", err)
	}
	next := func(r string, keep []int) error {
		// After the uid change the process is not dumpable and its own
		// /proc/self/exe is closed to it: resolve the path first.
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("own executable: %w", err)
		}
		return caps.BecomeIdentityAndExec(IDs(r), keep, exe, []string{"holdfast-" + r}, []string{Env + "=" + r})
	}
	switch role {
	case "become-worker":
		return next("worker", nil)
	case "become-sealer":
		// In a mount namespace of its own: everything read-only but
		// the store it serves, so CAP_FOWNER reaches nothing else.
		if err := caps.ReadOnlyMounts(os.Getenv(SealerStoreEnv)); err != nil {
			return fmt.Errorf("sealer: %w", err)
		}
		return next("sealer", sealer.Capabilities())
	case "become-dhcp":
		return next("dhcp", []int{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW})
	case "become-export":
		keep, err := exportNamespace(os.Getenv(exportStoreEnv), os.Getenv(exportConfigEnv), os.Getenv(exportListenEnv))
		if err != nil {
			return err
		}
		return next("export", keep)
	case "export":
		return runExport(log)
	case "sealer":
		conn, err := MoveFD(FDControl, "sealer")
		if err != nil {
			return err
		}
		root, err := readLine(conn)
		if err != nil {
			return err
		}
		log.Info("sealer up", "store", root)
		return sealer.Serve(context.Background(), conn, root, log)
	case "dhcp":
		// u-root's dhclient logs whole packets through the standard
		// library's log package: keep the first line of each message.
		stdlog.SetFlags(0)
		stdlog.SetOutput(FirstLine{log.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})})
		return network(context.Background(), log)
	case "worker":
		if worker == nil {
			return errors.New("this binary has no worker")
		}
		return worker(log)
	}
	return fmt.Errorf("unknown role %q", role)
}

// readLine reads one line byte by byte (so nothing after it is consumed).
func readLine(f *os.File) (string, error) {
	var b []byte
	c := make([]byte, 1)
	for len(b) < 4096 {
		if _, err := f.Read(c); err != nil {
			return "", fmt.Errorf("read: %w", err)
		}
		if c[0] == '\n' {
			return string(b), nil
		}
		b = append(b, c[0])
	}
	return "", errors.New("line too long")
}

// Command is the exec.Cmd that starts role: exe (PID 1's own binary) in
// the role's become- stage, with clone flags (a new mount namespace for
// the export and the sealers), more environment for that stage and extra
// files (fd 3 on). stderr goes to log, quoted by the caller. The child is
// killed when PID 1 dies.
func Command(exe, role string, cloneflags uintptr, env []string, log io.Writer, files ...*os.File) *exec.Cmd {
	cmd := exec.Command(exe)
	cmd.Args = []string{"holdfast-" + role}
	cmd.Env = append([]string{Env + "=become-" + role}, env...)
	cmd.Stderr = log
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: cloneflags}
	return cmd
}

// Socketpair returns two connected stream sockets as files.
func Socketpair(name string) (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair %s: %w", name, err)
	}
	return os.NewFile(uintptr(fds[0]), name), os.NewFile(uintptr(fds[1]), name), nil
}

// FirstLine passes on the first line of each write: u-root's dhclient logs
// whole DHCP packets through the standard library's log package.
type FirstLine struct{ W io.Writer }

func (f FirstLine) Write(p []byte) (int, error) {
	line, _, _ := strings.Cut(string(p), "\n")
	if _, err := io.WriteString(f.W, line+"\n"); err != nil {
		return 0, err
	}
	return len(p), nil
}

// MoveFD duplicates an inherited descriptor to a high, close-on-exec
// number, closes the original and returns the duplicate as a file. It
// refuses a descriptor that is not a socket.
func MoveFD(fd int, name string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("inherited %s descriptor %d: %w", name, fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("inherited %s descriptor %d is not a socket (mode %o)", name, fd, st.Mode)
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 64)
	if err != nil {
		return nil, fmt.Errorf("dup %s descriptor: %w", name, err)
	}
	unix.Close(fd)
	return os.NewFile(uintptr(nfd), name), nil
}
