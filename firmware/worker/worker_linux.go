package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/roles"
	"github.com/holdfast-appliance/holdfast/firmware/trustedtime"
	"github.com/holdfast-appliance/holdfast/services/alert"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/ingest"
	"github.com/holdfast-appliance/holdfast/services/sealer"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// workerMemoryExtra is what the worker's soft memory limit allows beyond a
// pull's (ingest.MemoryLimit): the mirror sync and a scrub slice, which
// read packs beside a pull, and the control channel.
const workerMemoryExtra = 16 << 20

// worker is the unprivileged process that pulls and writes the store.
type worker struct {
	log         hclog.Logger
	peer        *control.Conn
	sealerConns []*os.File
	// dmu guards the disks' failed fields; disks are the data disks
	// holding the store, the primary first (disks_linux.go).
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

// Run is the worker role's body (firmware/roles runs it as uid 1000,
// no capability): it takes its sockets, waits for PID 1's init and runs
// the pull schedule, the mirror's sync and the scrub until the control
// channel closes.
func Run(log hclog.Logger) error {
	s, err := caps.Read(0)
	if err != nil {
		return err
	}
	if s.Effective != 0 || s.Permitted != 0 || s.Bounding != 0 || os.Getuid() != roles.WorkerUID {
		return fmt.Errorf("worker started with uid %d, capabilities %+v: refusing to run", os.Getuid(), s)
	}
	// Move the inherited sockets out of the low numbers (close-on-exec),
	// and fail clearly if one is missing.
	ctl, err := roles.MoveFD(roles.FDControl, "control")
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
	parallel := 0
	for _, s := range w.cfg.Sources {
		jobs = append(jobs, ingest.Job{Name: s.Name, Every: s.Schedule.Every})
		parallel = max(parallel, s.Parallel)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Pulls run one at a time; the mirror sync and a scrub slice may
		// run beside one. Without a limit the heap goal grows with the
		// GC's headroom past the appliance's 96 MiB budget (measured with
		// holdfast pull, which sets the same limit).
		debug.SetMemoryLimit(ingest.MemoryLimit(runtime.GOMAXPROCS(0), parallel) + workerMemoryExtra)
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
func (w *worker) pull(ctx context.Context, name string) (*control.PullStatus, error) {
	src, ok := w.cfg.Source(name)
	if !ok {
		return nil, fmt.Errorf("no source %q", name)
	}
	if err := w.act.startPull(name); err != nil {
		return nil, err
	}
	defer w.act.endPull(name)
	start := time.Now()
	ps := &control.PullStatus{Last: start, Next: start.Add(src.Schedule.Every)}
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
func (w *worker) pullOn(ctx context.Context, d *wdisk, src config.Source, ps *control.PullStatus) error {
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

// storeKeys takes the store's subkeys from the control protocol, which
// imports nothing of the store.
func storeKeys(k control.StoreKeys) store.StoreKeys {
	return store.StoreKeys{ID: k.ID, ChunkID: k.ChunkID, Data: k.Data, Meta: k.Meta, Clock: k.Clock}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
