package worker

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/holdfast-appliance/holdfast/firmware/control"
	"github.com/holdfast-appliance/holdfast/firmware/receipt"
	"github.com/holdfast-appliance/holdfast/services/restore"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// The worker's side of a console restore (PID 1's side and the console
// lines are in firmware/appliance restore_linux.go): one "restore" request
// runs the restore in the goroutine the control channel gave it, and
// "restore-progress" says how far it got.

// restoreState is the worker's running restore, if any. The zero value is
// ready.
type restoreState struct {
	mu  sync.Mutex
	cur *control.RestoreReport
}

// begin records a new running restore, or says which one runs already.
func (s *restoreState) begin(r control.RestoreReport) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.cur; c != nil {
		return fmt.Errorf("a restore is already running (snapshot %s to target %q, %d/%d objects)", c.Snapshot, c.Target, c.Objects, c.TotalObjects)
	}
	s.cur = &r
	return nil
}

func (s *restoreState) set(r control.RestoreReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		*s.cur = r
	}
}

func (s *restoreState) get() (control.RestoreReport, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return control.RestoreReport{}, false
	}
	return *s.cur, true
}

func (s *restoreState) end() {
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
}

// restoreRequest is what PID 1 asks the worker to restore.
type restoreRequest struct {
	Snapshot, Target string
	Prefix           string // with Exact: the key
	Exact            bool
	ReceiptKey       []byte // PEM PKIX: the TPM's receipt key
	// Options tune restore.ToS3Selected (tests); Exact, Logger and Progress are
	// set by restoreSnapshot.
	Options restore.Options
}

// restoreOp answers the control channel's "restore" request. The
// channel runs each request in its own goroutine, so a restore runs beside
// scheduled pulls; it ends when the channel does (ctx).
func (w *worker) restoreOp(ctx context.Context, m *control.RestoreRequest) (*control.RestoreReply, error) {
	if w.cfg == nil {
		return nil, control.Errorf(control.Refused, "the worker is not initialised")
	}
	req := restoreRequest{Snapshot: m.Snapshot, Target: m.Target, Prefix: string(m.Prefix), Exact: m.Exact, ReceiptKey: m.ReceiptKey}
	if err := w.act.startRestore(&w.restores, control.RestoreReport{Snapshot: req.Snapshot, Target: req.Target}); err != nil {
		return nil, control.Errorf(control.Busy, "%v", err)
	}
	defer w.restores.end()
	r, err := w.restoreSnapshot(ctx, req, w.restores.set)
	return &control.RestoreReply{Restore: r}, err
}

// restoreProgress answers "restore-progress".
func (w *worker) restoreProgress() (*control.RestoreReply, error) {
	r, ok := w.restores.get()
	if !ok {
		return nil, control.Errorf(control.NotFound, "no restore is running")
	}
	return &control.RestoreReply{Restore: &r}, nil
}

// restoreSnapshot checks the snapshot's receipt and restores it (or its
// objects under a prefix, or one object) to a target of the config,
// calling progress once the receipt is verified and after every object.
// On an error after the receipt check it returns how far it got.
func (w *worker) restoreSnapshot(ctx context.Context, req restoreRequest, progress func(control.RestoreReport)) (*control.RestoreReport, error) {
	tg, err := w.cfg.TargetNamed(req.Target)
	if err != nil {
		return nil, err
	}
	if len(req.ReceiptKey) == 0 {
		return nil, errors.New("no receipt key: every restore checks the snapshot's receipt")
	}
	pub, err := receipt.ParsePublicKeyPEM(req.ReceiptKey)
	if err != nil {
		return nil, fmt.Errorf("receipt key: %w", err)
	}
	log := w.log.Named("restore")
	st, err := store.Open(ctx, w.primaryDir(), w.keys, store.Options{ReadOnly: true, Logger: w.log.Named("reader")})
	if err != nil {
		return nil, fmt.Errorf("open the store read-only: %w", err)
	}
	defer st.Close()
	if _, err := st.SnapshotHead(req.Snapshot); errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no snapshot %q in the store (the snapshots command lists them)", req.Snapshot)
	} else if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", req.Snapshot, err)
	}
	rc, err := restore.VerifyReceipt(st, req.Snapshot, pub)
	if err != nil {
		log.Error("restore refused: receipt check failed", "snapshot", req.Snapshot, "error", err)
		return nil, fmt.Errorf("refused, nothing was written: %w", err)
	}
	// Counted in one streaming pass: the object list is never held.
	sel, err := restore.Select(st, req.Snapshot, req.Prefix, req.Exact)
	switch {
	case errors.Is(err, store.ErrNotFound) && req.Exact:
		return nil, fmt.Errorf("snapshot %s holds no object %q (or it was deleted at the source)", req.Snapshot, req.Prefix)
	case errors.Is(err, store.ErrNotFound) && req.Prefix != "":
		return nil, fmt.Errorf("snapshot %s holds no object under %q", req.Snapshot, req.Prefix)
	case err != nil:
		return nil, err
	}
	rep := control.RestoreReport{Snapshot: req.Snapshot, Target: req.Target, Source: sel.Manifest.Source, Receipt: hex.EncodeToString(rc.ManifestDigest[:]),
		TotalObjects: sel.Objects, TotalBytes: sel.Bytes, DeleteMarkers: sel.DeleteMarkers}
	progress(rep)
	log.Info("restore started", "snapshot", req.Snapshot, "source", rep.Source, "target", tg.Name, "endpoint", tg.S3.Endpoint,
		"bucket", tg.S3.Bucket, "objects", rep.TotalObjects, "bytes", rep.TotalBytes, "receipt", "verified")
	start := time.Now()
	o := req.Options
	o.Exact, o.Logger = req.Exact, log
	// Progress calls are serialised and all done when ToS3 returns.
	o.Progress = func(p restore.Progress) {
		rep.Objects, rep.Bytes = p.Objects, p.Bytes
		progress(rep)
	}
	res, err := restore.ToS3Selected(ctx, sel, tg.S3, o)
	if res != nil {
		rep.Objects, rep.Bytes, rep.DeleteMarkers = res.Objects, res.Bytes, res.DeleteMarkers
	}
	if err != nil {
		log.Error("restore failed", "snapshot", req.Snapshot, "target", tg.Name, "objects", rep.Objects, "error", err)
		return &rep, err
	}
	log.Info("restore done", "snapshot", req.Snapshot, "target", tg.Name, "objects", rep.Objects, "bytes", rep.Bytes,
		"took", time.Since(start).Round(time.Millisecond))
	return &rep, nil
}
