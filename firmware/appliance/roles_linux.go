package appliance

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/trustedtime"
	"github.com/holdfast-appliance/holdfast/services/alert"
	"github.com/holdfast-appliance/holdfast/services/alertkind"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/ingest"
	"github.com/holdfast-appliance/holdfast/services/sealer"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// After lockdown the appliance is five kinds of process, each role under
// a uid and gid of its own (roleIDs), so none can signal, ptrace or write
// another's files:
//
//	| process | uid:gid   | groups | capabilities (bounding =   | keys (keys_linux.go) | mounts          | does                                  |
//	|         |           |        | permitted)                 |                      |                 |                                       |
//	|---------|-----------|--------|----------------------------|----------------------|-----------------|---------------------------------------|
//	| PID 1   | 0:0       | -      | see pid1Permitted          | master and all       | all             | console, TPM, prune at boot; no       |
//	|         |           |        | (lockdown_linux.go)        |                      |                 | network input                         |
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
// Each child is PID 1's own binary re-executed with RoleEnv set: first as
// root ("become-*"), which calls caps.BecomeAndExec to drop the bounding
// set, change uid and set no_new_privs, then as the role itself. Every
// role is started during lockdown, before PID 1 empties its bounding set
// (limitPID1): after that no process on the box, a role or a uid-0
// program, holds CAP_SETUID, CAP_SETGID or CAP_SETPCAP, and spawnWith
// refuses (with an alert) to start a role, since its become- stage could
// not change its uid. A role that dies stays dead until the next boot.

// RoleEnv selects a child role of the init binary.
const RoleEnv = "HOLDFAST_ROLE"

// The uids of the roles; each role's gid is its uid. The worker's gid is
// the store's group, of which the sealer and the export are members.
const (
	WorkerUID = 1000 // owns the store on every data disk
	SealerUID = 1001
	ExportUID = 1002
	DHCPUID   = 1003
)

// roleIDs are each role's identity (see the process table above).
func roleIDs(role string) caps.Identity {
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

// Environment of the become-sealer stage: the store it serves, the only
// mount it may write (nothing secret).
const sealerStoreEnv = "HOLDFAST_SEALER_STORE"

// Extra files of the children (after stdin, stdout, stderr).
const (
	fdControl = 3 // worker: control socket to PID 1; sealer: its request socket
	fdSealer  = 4 // worker: socket to the sealer
)

// RunRole runs a child role and returns the process exit code.
func RunRole(role string) int {
	log := hclog.New(&hclog.LoggerOptions{Name: "holdfast." + role, Output: os.Stderr, Level: hclog.Info, Color: hclog.ColorOff, TimeFormat: "15:04:05.000"})
	err := runRole(role, log)
	if err != nil {
		log.Error("role failed", "error", err)
		return 1
	}
	return 0
}

func runRole(role string, log hclog.Logger) error {
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
		return caps.BecomeIdentityAndExec(roleIDs(r), keep, exe, []string{"holdfast-" + r}, []string{RoleEnv + "=" + r})
	}
	switch role {
	case "become-worker":
		return next("worker", nil)
	case "become-sealer":
		// In a mount namespace of its own: everything read-only but
		// the store it serves, so CAP_FOWNER reaches nothing else.
		if err := caps.ReadOnlyMounts(os.Getenv(sealerStoreEnv)); err != nil {
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
		conn, err := moveFD(fdControl, "sealer")
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
		return runWorker(log)
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

// spawn starts a child role with extra files; stderr goes to logOut.
func (a *appliance) spawn(role string, files ...*os.File) (*exec.Cmd, error) {
	return a.spawnWith(role, 0, nil, files...)
}

// spawnWith is spawn with clone flags (a new mount namespace for the
// export) and more environment for the become- stage.
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
	cmd := exec.Command(exe)
	cmd.Args = []string{"holdfast-" + role}
	cmd.Env = append([]string{RoleEnv + "=become-" + role}, env...)
	// A role's log lines carry what the network sent (keys, errors):
	// quoted, they can neither drive the operator's terminal nor forge a
	// frame.
	cmd.Stderr = console.QuoteWriter{W: a.o.LogOutput}
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: cloneflags}
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

// socketpair returns two connected stream sockets as files.
func socketpair(name string) (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair %s: %w", name, err)
	}
	return os.NewFile(uintptr(fds[0]), name), os.NewFile(uintptr(fds[1]), name), nil
}

// worker is the unprivileged process that pulls and writes the store.
type worker struct {
	log         hclog.Logger
	peer        *control.Conn
	sealerConns []*os.File
	// dmu guards the disks' failed fields; disks are the data disks
	// holding the store, the primary first (worker_disks_linux.go).
	dmu      sync.Mutex
	disks    []*wdisk
	syncKick chan struct{}
	scrubMu  sync.Mutex      // one scrub at a time
	keys     store.StoreKeys // the store's subkeys from PID 1; never the master key
	cfg      *config.File
	ready    chan struct{}
	// floor is the trusted time T PID 1 gave at init: retention counts
	// from no earlier than it.
	floor time.Time
	// out sends alerts by mail and webhook when the config says so;
	// nil logs them only.
	out *alert.Dispatcher
	// restores is the running console restore (restore_linux.go).
	restores restoreState
	// act is what a maintenance reboot waits for (maintreboot_linux.go).
	act activity
}

func runWorker(log hclog.Logger) error {
	s, err := caps.Read(0)
	if err != nil {
		return err
	}
	if s.Effective != 0 || s.Permitted != 0 || s.Bounding != 0 || os.Getuid() != WorkerUID {
		return fmt.Errorf("worker started with uid %d, capabilities %+v: refusing to run", os.Getuid(), s)
	}
	// Move the inherited sockets out of the low numbers (close-on-exec),
	// and fail clearly if one is missing.
	ctl, err := moveFD(fdControl, "control")
	if err != nil {
		return err
	}
	sc, err := sealerSockets()
	if err != nil {
		return err
	}
	w := &worker{log: log, ready: make(chan struct{}), sealerConns: sc, syncKick: make(chan struct{}, 1)}
	w.peer = control.New(ctl, control.Options{Side: control.Worker, Handler: w.handle, Log: log.Named("control")})
	select {
	case <-w.ready:
	case <-w.peer.Done():
		return errors.New("control channel closed before init")
	}
	jobs := make([]ingest.Job, 0, len(w.cfg.Sources))
	for _, s := range w.cfg.Sources {
		jobs = append(jobs, ingest.Job{Name: s.Name, Every: s.Schedule.Every})
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-w.peer.Done(); cancel() }()
	log.Info("worker up", "uid", os.Getuid(), "sources", len(jobs), "disks", len(w.disks))
	go w.syncLoop(ctx)
	w.kickSync() // catch up with what the last boot left
	go w.scrubLoop(ctx)
	sched := &ingest.Scheduler{Log: log.Named("schedule"), Pull: func(ctx context.Context, name string) error {
		st, err := w.pull(ctx, name)
		if errors.Is(err, errQuiesced) {
			return nil // PID 1 is rebooting into the maintenance window
		}
		if st != nil {
			_ = w.peer.Notify(&control.StatusNotice{Source: name, Status: st})
		}
		return err
	}}
	return sched.Run(ctx, jobs)
}

// handle answers PID 1 (see the table in firmware/control).
func (w *worker) handle(ctx context.Context, req control.Request) (control.Reply, error) {
	if _, ok := req.(*control.InitRequest); !ok && w.cfg == nil {
		return nil, control.Errorf(control.Refused, "%s before init", req.Op())
	}
	switch m := req.(type) {
	case *control.InitRequest:
		return w.init(m)
	case *control.SendAlert:
		// PID 1's own alerts (clock, prune, disks): it has no network.
		if w.out != nil {
			_ = w.out.Alert(ctx, ingest.Alert{Kind: m.Kind, Message: m.Text, Time: time.Now()})
		}
		return nil, nil
	case *control.PullRequest:
		if _, ok := w.cfg.Source(m.Source); !ok {
			return nil, control.Errorf(control.NotFound, "no source %q", m.Source)
		}
		st, err := w.pull(ctx, m.Source)
		return &control.PullReply{Status: st}, typed(err)
	case *control.ExtendRequest:
		d := w.writer()
		if d == nil {
			return nil, control.Errorf(control.DiskFailed, "no usable data disk")
		}
		d.mu.Lock()
		defer w.kickSync()
		defer d.mu.Unlock()
		st, err := store.Open(ctx, d.ref.Dir, w.keys, w.storeOptions(d))
		if err != nil {
			return nil, typed(err)
		}
		defer st.Close()
		if err := st.Extend(m.Snapshot, m.Until, m.Hold, m.Reason); err != nil {
			return nil, typed(err)
		}
		return &control.Empty{}, nil
	case *control.ScrubRequest:
		text, err := w.scrub(ctx)
		if err != nil {
			return nil, typed(err)
		}
		return &control.ScrubReply{Summary: text}, nil
	case *control.RestoreRequest:
		return w.restoreOp(ctx, m) // restore_linux.go
	case *control.RestoreProgressRequest:
		return w.restoreProgress()
	case *control.QuiesceRequest:
		return &control.QuiesceReply{Busy: w.act.quiesce(&w.restores)}, nil // maintreboot_linux.go
	}
	return nil, control.Errorf(control.Refused, "%s is not an op the worker answers", req.Op())
}

// init takes the worker's keys, config and disks, once.
func (w *worker) init(m *control.InitRequest) (control.Reply, error) {
	select {
	case <-w.ready:
		return nil, control.Errorf(control.Refused, "already initialised")
	default:
	}
	cfg, err := config.Parse("config.sealed", m.Config)
	if err != nil {
		return nil, control.Errorf(control.Invalid, "config: %v", err)
	}
	w.keys, w.floor = storeKeys(m.Keys), m.TrustedTime
	if err := w.setDisks(m.Disks, m.StoreDir); err != nil {
		return nil, control.Errorf(control.Invalid, "%v", err)
	}
	if cfg.Alerts != nil {
		d, err := alert.FromConfig(cfg, w.log.Named("alert"))
		if err != nil {
			return nil, control.Errorf(control.Invalid, "alerts: %v", err)
		}
		w.out = d
	}
	if m.Create {
		st, err := store.Init(context.Background(), w.disks[0].ref.Dir, w.keys, store.InitOptions{RecoveryBlob: m.Recovery}, w.storeOptions(w.disks[0]))
		if err != nil {
			return nil, fmt.Errorf("create store: %w", typed(err))
		}
		st.Close()
		w.log.Info("store created", "dir", w.disks[0].ref.Dir)
	}
	w.cfg = cfg
	close(w.ready)
	return &control.Empty{}, nil
}

// typed gives an error its kind for PID 1: a failing disk, a snapshot or
// source that does not exist; anything else is internal.
func typed(err error) error {
	switch {
	case err == nil:
		return nil
	case control.KindOf(err) != control.Internal:
		return err
	case diskFailed(err):
		return &control.Error{Kind: control.DiskFailed, Text: err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return &control.Error{Kind: control.NotFound, Text: err.Error()}
	case errors.Is(err, errQuiesced):
		return &control.Error{Kind: control.Busy, Text: err.Error()}
	}
	return err
}

// pull pulls one source into the primary disk's store, which is open (and
// its write lock held) only while the pull runs. When the disk fails, the
// next usable disk becomes the primary and the pull starts again there.
func (w *worker) pull(ctx context.Context, name string) (*pullStatus, error) {
	src, ok := w.cfg.Source(name)
	if !ok {
		return nil, fmt.Errorf("no source %q", name)
	}
	if err := w.act.startPull(name); err != nil {
		return nil, err
	}
	defer w.act.endPull(name)
	start := time.Now()
	ps := &pullStatus{Last: start, Next: start.Add(src.Schedule.Every)}
	defer w.kickSync()
	var err error
	for {
		d := w.writer()
		if d == nil {
			err = errors.New("no data disk is usable this boot: every disk failed (see the disk-error alerts)")
			break
		}
		err = w.pullOn(ctx, d, src, ps)
		if err == nil || !diskFailed(err) || !w.fail(ctx, d, err) {
			break
		}
		w.log.Warn("pull starts again on the next disk", "source", name, "failed_disk", d.ref.Name)
	}
	ps.Took = time.Since(start)
	// What crosses to PID 1 fits the protocol's bounds.
	ps.Err, ps.Summary = control.Clip(errString(err)), control.Clip(ps.Summary)
	return ps, err
}

// pullOn pulls src into the store on d.
func (w *worker) pullOn(ctx context.Context, d *wdisk, src config.Source, ps *pullStatus) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	st, err := store.Open(ctx, d.ref.Dir, w.keys, w.storeOptions(d))
	if err != nil {
		return err
	}
	defer st.Close()
	p := &ingest.Puller{Store: st, Log: w.log.Named("pull"), Alerter: w.alerter(),
		Now: func() time.Time { return trustedtime.RetainFrom(time.Now(), w.floor) }}
	res, err := p.Pull(ctx, src)
	if res != nil {
		ps.Snapshot = res.Snapshot
		ps.Summary = fmt.Sprintf("%d objects, %d bytes, %d fetched, %d reused, complete=%v", res.Objects, res.Bytes, res.Fetched, res.Reused, res.Complete)
		w.log.Info("snapshot committed", "source", src.Name, "snapshot", res.Snapshot, "objects", res.Objects, "bytes", res.Bytes,
			"fetched", res.Fetched, "reused", res.Reused, "complete", res.Complete, "took", time.Since(start).Round(time.Millisecond), "disk", d.ref.Name)
	}
	return err
}

// peerSigner asks PID 1, which holds the TPM, to sign a receipt. It names
// the snapshot only: PID 1 digests the sealed manifest itself (the digest
// the store computed is not sent).
type peerSigner struct{ p *control.Conn }

func (s peerSigner) SignManifest(ctx context.Context, id string, _ [32]byte) ([]byte, error) {
	// PID 1 answers busy while its limit of requests in flight is
	// reached (notices count too): try again a few times.
	wait := 100 * time.Millisecond
	for try := 0; ; try++ {
		r, err := control.Do[*control.SignReply](ctx, s.p, &control.SignRequest{Snapshot: id})
		if err == nil {
			return r.Receipt, nil
		}
		if control.KindOf(err) != control.Busy || try == 8 {
			return nil, fmt.Errorf("sign receipt: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("sign receipt: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// peerAlerter sends ingest alerts out (mail, webhook) and hands them to
// PID 1 for the console's status.
type peerAlerter struct {
	p   *control.Conn
	log hclog.Logger
	out *alert.Dispatcher
}

func (a peerAlerter) Alert(ctx context.Context, al ingest.Alert) error {
	if a.out != nil {
		_ = a.out.Alert(ctx, al) // logs it too
	} else {
		a.log.Error(al.Message, "alert", true, "kind", al.Kind, "source", al.Source, "snapshot", al.Snapshot)
	}
	text := al.Message
	if len(al.Held) > 0 {
		text += fmt.Sprintf(" (held %v)", al.Held)
	}
	n := &control.AlertNotice{Kind: al.Kind, Source: al.Source, Snapshot: al.Snapshot, Text: control.Clip(text)}
	if n.Validate() != nil {
		// A source or snapshot name over the protocol's bounds: keep
		// the alert, quoted in its text.
		n = &control.AlertNotice{Kind: al.Kind, Text: control.Clip(fmt.Sprintf("%s (source %q, snapshot %q)", text, al.Source, al.Snapshot))}
	}
	return a.p.Notify(n)
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

// moveFD duplicates an inherited descriptor to a high, close-on-exec number,
// closes the original and returns the duplicate as a file.
func moveFD(fd int, name string) (*os.File, error) {
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

// diagSealer logs the process's open descriptors when a seal request
// cannot be sent (a diagnostic for a descriptor closed behind our back).
type diagSealer struct {
	c   *sealer.Client
	f   *os.File
	log hclog.Logger
}

func (d diagSealer) SealFile(p string) error { return d.diag(d.c.SealFile(p)) }
func (d diagSealer) SealDir(p string) error  { return d.diag(d.c.SealDir(p)) }

func (d diagSealer) diag(err error) error {
	if err == nil || !errors.Is(err, unix.EBADF) {
		return err
	}
	var open []string
	for fd := 0; fd < 256; fd++ {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil {
			open = append(open, fmt.Sprintf("%d:%o", fd, st.Mode&unix.S_IFMT))
		}
	}
	d.log.Error("sealer descriptor lost", "file_fd", d.f.Fd(), "open", strings.Join(open, " "), "error", err)
	return err
}
