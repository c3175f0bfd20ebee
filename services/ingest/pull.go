package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// maxRecordedErrors bounds the errors one snapshot records (I8: a hostile
// source cannot grow the manifest without limit); the rest are counted.
const maxRecordedErrors = 1000

// ErrIncomplete means the pull committed its snapshot but hit errors or
// bounds; the snapshot is marked incomplete and lists them.
var ErrIncomplete = errors.New("snapshot is incomplete")

// Puller runs pulls into one store. Only one pull may run at a time.
type Puller struct {
	Store *store.Store
	Log   hclog.Logger
	// Alerter receives mass-change alerts; nil logs them (LogAlerter).
	Alerter Alerter
	// Now is the time retention is computed from; nil means time.Now.
	Now func() time.Time
	// Progress, if set, is told what a pull will fetch and what it read.
	Progress Progress
	// Net bounds waits and response sizes at the source; zero fields take
	// the Default* values (see NetLimits).
	Net NetLimits
	// DiskFullThreshold is the share of the store's file system in use
	// above which a pull ends with a disk-full alert; 0 means
	// DefaultDiskFullThreshold, a negative value turns the check off. A pull
	// stopped by a full disk (ENOSPC) always raises one.
	DiskFullThreshold float64
}

// Progress follows a pull. Its methods are called from several goroutines.
type Progress interface {
	// Planned is called once the listing is done, with what will be fetched.
	Planned(objects int, bytes int64)
	// Transferred is called as body bytes arrive.
	Transferred(n int)
}

// Result describes a pull.
type Result struct {
	Source       string
	Snapshot     string
	RetainUntil  time.Time
	Versioned    bool
	Listed       int   // listing entries: objects, versions, delete markers
	Objects      int64 // objects in the snapshot
	Bytes        int64 // their total size
	Reused       int   // unchanged objects recorded without a GET
	Fetched      int   // objects read with GET
	FetchedBytes int64
	Failed       int // objects left out because of an error or a bound
	Resumes      int // Range GETs after a cut transfer
	Complete     bool
	Errors       []string
	MassChange   *MassChange // nil when none was detected
	Held         []string    // earlier snapshots put under legal hold
}

// MassChange describes what a pull found changed since the source's
// previous complete snapshot (Baseline).
type MassChange struct {
	Baseline string
	Previous int // live objects in the baseline
	Current  int // live objects now
	Gone     int
	Changed  int
	Share    float64 // (Gone + Changed) / Previous
	Empty    bool    // the bucket lists no live object
}

func (p *Puller) log() hclog.Logger {
	if p.Log == nil {
		return hclog.NewNullLogger()
	}
	return p.Log
}

func (p *Puller) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Pull pulls src once. It returns an error wrapping ErrIncomplete (with the
// Result) when the snapshot was committed incomplete, and an error with a
// nil Result when the source could not be reached or the store failed.
func (p *Puller) Pull(ctx context.Context, src config.Source) (*Result, error) {
	b, err := newS3Bucket(src, p.Net)
	if err != nil {
		return nil, err
	}
	defer b.close()
	return p.pull(ctx, src, b)
}

// pull pulls src from b once, then checks the store's disk.
func (p *Puller) pull(ctx context.Context, src config.Source, b bucket) (*Result, error) {
	res, err := p.pullOnce(ctx, src, b)
	p.checkDisk(ctx, src, res, err)
	return res, err
}

// finishInterrupted commits, as incomplete, any snapshot of source that a
// crash left in progress, so its objects stay referenced and reusable.
func (p *Puller) finishInterrupted(ctx context.Context, source string, log hclog.Logger) error {
	ints, err := p.Store.Interrupted()
	if err != nil {
		return err
	}
	for _, in := range ints {
		if in.Source != source {
			continue
		}
		sn, err := p.Store.Resume(ctx, in.ID)
		if err != nil {
			return fmt.Errorf("finish interrupted snapshot %s: %w", in.ID, err)
		}
		sn.RecordError("pull interrupted (crash or power cut); committed as incomplete by the next pull")
		if _, err := sn.Commit(ctx, store.CommitOptions{Incomplete: true}); err != nil {
			return fmt.Errorf("finish interrupted snapshot %s: %w", in.ID, err)
		}
		log.Warn("interrupted pull committed as an incomplete snapshot", "snapshot", in.ID, "objects", in.Objects)
	}
	return nil
}

// errorLog records errors in the snapshot and the log, at most
// maxRecordedErrors of them in each (a hostile source must not flood
// either); the rest are counted.
type errorLog struct {
	mu  sync.Mutex
	sn  *store.Snapshot
	log hclog.Logger
	n   int
}

func (l *errorLog) add(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	switch {
	case l.n <= maxRecordedErrors:
		l.log.Error(msg)
		l.sn.RecordError(msg)
	case l.n == maxRecordedErrors+1:
		l.log.Error("more errors: counted, neither logged nor recorded one by one", "recorded", maxRecordedErrors)
	}
}

func (l *errorLog) finish() {
	if l.n > maxRecordedErrors {
		msg := fmt.Sprintf("%d further errors not recorded", l.n-maxRecordedErrors)
		l.log.Error(msg)
		l.sn.RecordError(msg)
	}
}

// errTooMany stops a listing at max_objects_per_pull.
var errTooMany = errors.New("too many objects")

// listWindow is how many listed entries the pull keeps in flight ahead
// of the record it writes next (a few listing pages): fetches run across
// them, so one large object does not stall the others, while records
// reach the snapshot strictly in listing order.
const listWindow = 4096

// slot is one listed entry on its way to the snapshot, in listing order.
type slot struct {
	e    entry // to fetch (when done is set)
	obj  store.Object
	done chan struct{} // nil when obj is known at listing time; else closed once fetched
	ok   bool          // obj is to be recorded (set before done is closed)
}

// pipeline runs a pull's fetches and records: the listing hands it slots
// in order, workers fetch, one emitter records in order.
type pipeline struct {
	p      *Puller
	src    config.Source
	b      bucket
	sn     *store.Snapshot
	res    *Result
	errs   *errorLog
	log    hclog.Logger
	ctx    context.Context // cancelled on a store failure
	cancel context.CancelFunc

	order chan *slot
	work  chan *slot
	wg    sync.WaitGroup // workers
	emit  chan struct{}  // closed when the emitter is done

	fetched, failed, resumes, fetchedBytes atomic.Int64

	mu       sync.Mutex
	storeErr error // the first store failure: it ends the pull
}

func newPipeline(ctx context.Context, p *Puller, src config.Source, b bucket, sn *store.Snapshot, res *Result, errs *errorLog, log hclog.Logger) *pipeline {
	pl := &pipeline{p: p, src: src, b: b, sn: sn, res: res, errs: errs, log: log,
		order: make(chan *slot, listWindow), work: make(chan *slot), emit: make(chan struct{})}
	pl.ctx, pl.cancel = context.WithCancel(ctx)
	for range max(1, src.Parallel) {
		pl.wg.Add(1)
		go pl.worker()
	}
	go pl.emitter()
	return pl
}

// fail records a store failure and stops the pull.
func (pl *pipeline) fail(err error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.storeErr == nil {
		pl.storeErr = err
		pl.cancel()
	}
}

func (pl *pipeline) err() error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.storeErr
}

// ready queues an object known at listing time (reused, or a delete
// marker) for recording.
func (pl *pipeline) ready(o store.Object) error {
	select {
	case pl.order <- &slot{obj: o, ok: true}:
		return nil
	case <-pl.ctx.Done():
		return pl.ctx.Err()
	}
}

// fetch queues e for a GET; its record follows in order once fetched.
func (pl *pipeline) fetch(e entry) error {
	sl := &slot{e: e, done: make(chan struct{})}
	select {
	case pl.order <- sl:
	case <-pl.ctx.Done():
		return pl.ctx.Err()
	}
	// The slot is in order: it must be finished even if the pull stops.
	select {
	case pl.work <- sl:
		return nil
	case <-pl.ctx.Done():
		close(sl.done) // not fetched: nothing to record
		return pl.ctx.Err()
	}
}

func (pl *pipeline) worker() {
	defer pl.wg.Done()
	for sl := range pl.work {
		pl.fetchSlot(sl)
		close(sl.done)
	}
}

func (pl *pipeline) fetchSlot(sl *slot) {
	e := sl.e
	o, r, err := pl.p.fetchOne(pl.ctx, pl.src, pl.b, pl.sn, e, pl.log)
	pl.resumes.Add(int64(r))
	switch {
	case err == nil:
		pl.fetched.Add(1)
		pl.fetchedBytes.Add(o.Size)
		sl.obj, sl.ok = o, true
	case errors.Is(err, store.ErrSnapshotClosed) || isStoreWriteErr(err):
		pl.fail(err)
	case pl.ctx.Err() != nil:
		// Interrupted: reported once by the caller.
		pl.failed.Add(1)
	default:
		pl.failed.Add(1)
		pl.errs.add("object %s version %q: %v", quoteKey(e.Key), e.VersionID, err)
	}
}

// emitter records the slots in listing order.
func (pl *pipeline) emitter() {
	defer close(pl.emit)
	for sl := range pl.order {
		if sl.done != nil {
			<-sl.done
		}
		if !sl.ok || pl.err() != nil {
			continue
		}
		if err := pl.sn.PutExisting(sl.obj); err != nil {
			pl.fail(err)
		}
	}
}

// finish waits for every fetch and record, and adds the counts to res.
func (pl *pipeline) finish() error {
	close(pl.work)
	close(pl.order)
	pl.wg.Wait()
	<-pl.emit
	pl.cancel()
	pl.res.Fetched += int(pl.fetched.Load())
	pl.res.FetchedBytes += pl.fetchedBytes.Load()
	pl.res.Failed += int(pl.failed.Load())
	pl.res.Resumes += int(pl.resumes.Load())
	return pl.err()
}

func (p *Puller) pullOnce(ctx context.Context, src config.Source, b bucket) (*Result, error) {
	log := p.log().With("source", src.Name)
	versioned, err := b.Versioned(ctx)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src.Name, err)
	}
	if err := p.finishInterrupted(ctx, src.Name, log); err != nil {
		return nil, fmt.Errorf("source %q: %w", src.Name, err)
	}
	h, err := p.history(src.Name)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src.Name, err)
	}
	prev, err := h.open(p.Store, log)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src.Name, err)
	}
	defer prev.close()
	res := &Result{Source: src.Name, Versioned: versioned}
	res.RetainUntil = src.Retention.RetainUntil(p.now(), h.starts)
	sn, err := p.Store.Begin(ctx, store.BeginOptions{Source: src.Name, RetainUntil: res.RetainUntil, Sorted: true})
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src.Name, err)
	}
	res.Snapshot = sn.ID()
	log = log.With("snapshot", sn.ID())
	log.Info("pull started", "versioned", versioned, "retain_until", res.RetainUntil, "previous", len(h.all))
	errs := &errorLog{sn: sn, log: log}

	// List; each entry is reused, recorded as a delete marker, refused or
	// fetched, and recorded in listing order (the snapshot is sorted).
	pl := newPipeline(ctx, p, src, b, sn, res, errs, log)
	var toFetch int
	var fetchBytes, total int64
	var lastKey []byte
	listErr := b.List(pl.ctx, versioned, func(e entry) error {
		if int64(res.Listed) >= src.Limits.MaxObjectsPerPull {
			return errTooMany
		}
		res.Listed++
		inOrder := res.Listed == 1 || bytes.Compare(e.Key, lastKey) >= 0
		if err := prev.observe(e, inOrder); err != nil {
			pl.fail(err)
			return err
		}
		if len(e.Key) > MaxKeyBytes {
			res.Failed++
			errs.add("object %s... version %q: key of %d bytes exceeds %d (S3's limit); not pulled", quoteKey(e.Key[:64]), e.VersionID, len(e.Key), MaxKeyBytes)
			return nil
		}
		if !inOrder {
			res.Failed++
			errs.add("object %s version %q: listed after %s, out of S3's key order; not pulled", quoteKey(e.Key), e.VersionID, quoteKey(lastKey))
			return nil
		}
		lastKey = append(lastKey[:0], e.Key...)
		if e.DeleteMarker {
			return pl.ready(store.Object{Key: e.Key, VersionID: e.VersionID, ModTime: e.ModTime, DeleteMarker: true})
		}
		if e.Size < 0 || e.Size > src.Limits.MaxObjectSize {
			res.Failed++
			errs.add("object %s version %q: %d bytes exceeds max_object_size (%d bytes); not pulled", quoteKey(e.Key), e.VersionID, e.Size, src.Limits.MaxObjectSize)
			return nil
		}
		if total+e.Size > src.Limits.Quota {
			res.Failed++
			errs.add("object %s version %q: %d bytes would take the snapshot past quota (%d of %d bytes used); not pulled", quoteKey(e.Key), e.VersionID, e.Size, total, src.Limits.Quota)
			return nil
		}
		total += e.Size
		if o, ok := prev.find(e); ok && o.Size == e.Size && o.ETag == e.ETag && o.ModTime.Equal(e.ModTime) {
			res.Reused++
			return pl.ready(o)
		}
		toFetch++
		fetchBytes += e.Size
		return pl.fetch(e)
	})
	storeErr := pl.err()
	listed := listErr == nil
	switch {
	case listErr == nil:
	case storeErr != nil:
	case errors.Is(listErr, errTooMany):
		errs.add("listing stopped after %d objects: max_objects_per_pull (%d) reached; the rest of the bucket is not in this snapshot", res.Listed, src.Limits.MaxObjectsPerPull)
	case ctx.Err() != nil && (errors.Is(listErr, context.Canceled) || errors.Is(listErr, context.DeadlineExceeded)):
		// Interrupted: reported once below.
		listed = false
	default:
		errs.add("listing failed after %d objects: %v", res.Listed, listErr)
	}
	log.Info("listed", "entries", res.Listed, "unchanged", res.Reused, "to_fetch", toFetch, "fetch_bytes", fetchBytes)
	if p.Progress != nil && toFetch > 0 && storeErr == nil {
		// Fetches started as the listing went; the total is known now.
		p.Progress.Planned(toFetch, fetchBytes)
	}

	// A wiped or rewritten source: alert, and hold what came before.
	if listed && storeErr == nil {
		mc, err := prev.massChange(src.MassChangeThreshold)
		switch {
		case err != nil:
			pl.fail(err)
		case mc != nil:
			res.MassChange = mc
			p.onMassChange(ctx, src, h, res, log)
		}
	}

	// Wait for the fetches and records still in flight.
	if storeErr = pl.finish(); storeErr != nil {
		// The store cannot take more (a full disk, an I/O error): the
		// snapshot in progress is discarded; packs it sealed stay until
		// prune finds them unreferenced, and committed snapshots are not
		// touched.
		if aerr := sn.Abort(); aerr != nil {
			log.Error("abort snapshot", "error", aerr)
		}
		if isDiskFull(storeErr) {
			log.Error("pull stopped: the store's disk is full; snapshot discarded, committed snapshots unchanged", "error", storeErr)
			return nil, fmt.Errorf("source %q: store disk full: pull stopped and snapshot %s discarded (committed snapshots are unchanged): %w", src.Name, sn.ID(), storeErr)
		}
		log.Error("pull stopped: store failure; snapshot discarded", "error", storeErr)
		return nil, fmt.Errorf("source %q: store: %w", src.Name, storeErr)
	}
	if err := ctx.Err(); err != nil {
		errs.add("pull interrupted: %v", err)
	}
	errs.finish()
	// An interrupted pull still commits what it has, marked incomplete.
	m, err := sn.Commit(context.WithoutCancel(ctx), store.CommitOptions{Incomplete: errs.n > 0})
	if err != nil {
		return nil, fmt.Errorf("source %q: commit: %w", src.Name, err)
	}
	res.Objects, res.Bytes, res.Complete, res.Errors = m.Count, m.Bytes, m.Complete, m.Errors
	log.Info("pull finished", "objects", m.Count, "bytes", m.Bytes, "reused", res.Reused, "fetched", res.Fetched,
		"fetched_bytes", res.FetchedBytes, "failed", res.Failed, "resumes", res.Resumes, "complete", m.Complete)
	if !m.Complete {
		return res, fmt.Errorf("source %q: snapshot %s: %d errors (first: %s): %w", src.Name, m.ID, errs.n, firstOr(m.Errors), ErrIncomplete)
	}
	return res, nil
}

func firstOr(errs []string) string {
	if len(errs) == 0 {
		return "none recorded"
	}
	return errs[0]
}

// storeWriteErr marks a failure of the store itself (not of the source).
type storeWriteErr struct{ err error }

func (e storeWriteErr) Error() string { return e.err.Error() }
func (e storeWriteErr) Unwrap() error { return e.err }

func isStoreWriteErr(err error) bool {
	var s storeWriteErr
	return errors.As(err, &s)
}

// fetchOne GETs one object version's body into sn's packs and returns the
// object, not yet recorded (the pipeline records it in listing order), and
// the number of Range resumes it took.
func (p *Puller) fetchOne(ctx context.Context, src config.Source, b bucket, sn *store.Snapshot, e entry, log hclog.Logger) (store.Object, int, error) {
	var onRead func(int)
	if p.Progress != nil {
		onRead = p.Progress.Transferred
	}
	r := newBody(ctx, b, e, src.Retries, src.S3.CheckETagMD5, log, onRead)
	defer r.Close()
	// The first GET comes before Put: its headers carry the content type
	// and user metadata the object is recorded with.
	if err := r.open(); err != nil {
		return store.Object{}, 0, err
	}
	ct, meta := r.metadata()
	if n := metaBytes(meta); n > MaxUserMetaBytes {
		return store.Object{}, r.resumes, fmt.Errorf("user metadata of %d bytes exceeds %d (S3's limit); not pulled", n, MaxUserMetaBytes)
	}
	var verifyErr error
	info := store.ObjectInfo{
		Key: e.Key, ModTime: e.ModTime, ETag: e.ETag, VersionID: e.VersionID, ContentType: ct, UserMeta: meta,
		Finish: func(size int64) (map[string]string, error) {
			sums, err := r.verify(size)
			verifyErr = err
			return sums, err
		},
	}
	var readErr error
	obj, err := sn.StoreBody(ctx, info, readErrTap{r, &readErr})
	if err != nil {
		if verifyErr != nil || readErr != nil || ctx.Err() != nil {
			// The source's fault: the body was not what it declared, or
			// could not be read.
			return store.Object{}, r.resumes, err
		}
		return store.Object{}, r.resumes, storeWriteErr{err}
	}
	return obj, r.resumes, nil
}

// readErrTap remembers the last read error, so a failed Put can be told
// apart: the source's body, or the store.
type readErrTap struct {
	r   *body
	err *error
}

func (t readErrTap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		*t.err = err
	}
	return n, err
}

// onMassChange holds the source's earlier snapshots (when configured) and
// raises the alert. Neither failing stops the pull.
func (p *Puller) onMassChange(ctx context.Context, src config.Source, h *history, res *Result, log hclog.Logger) {
	mc := res.MassChange
	what := fmt.Sprintf("%d of %d objects gone and %d changed since snapshot %s (%.0f%%, threshold %.0f%%)",
		mc.Gone, mc.Previous, mc.Changed, mc.Baseline, 100*mc.Share, 100*src.MassChangeThreshold)
	if mc.Empty {
		what = fmt.Sprintf("the bucket is empty; snapshot %s held %d objects", mc.Baseline, mc.Previous)
	}
	if src.LegalHoldOnMassChange {
		reason := fmt.Sprintf("mass change at source %q seen by snapshot %s: %s", src.Name, res.Snapshot, what)
		for _, si := range h.all {
			if si.Retention.LegalHold {
				continue
			}
			err := p.Store.Extend(si.ID, time.Time{}, true, reason)
			if err != nil && !errors.Is(err, store.ErrShorten) {
				log.Error("legal hold failed", "held_snapshot", si.ID, "error", err)
				continue
			}
			res.Held = append(res.Held, si.ID)
		}
	}
	a := Alert{
		Kind: KindMassChange, Source: src.Name, Snapshot: res.Snapshot, Held: res.Held,
		Previous: mc.Previous, Gone: mc.Gone, Changed: mc.Changed,
		Message: fmt.Sprintf("mass change at source %q: %s; the new snapshot is committed as usual and older snapshots are unchanged", src.Name, what),
	}
	if len(res.Held) > 0 {
		a.Message += fmt.Sprintf("; %d earlier snapshots put under legal hold", len(res.Held))
	}
	p.alert(ctx, a, log)
}

// alert raises a through the Alerter (or the log). Alerts of a pull are
// raised even when the pull was cancelled.
func (p *Puller) alert(ctx context.Context, a Alert, log hclog.Logger) {
	al := p.Alerter
	if al == nil {
		al = LogAlerter{Log: log}
	}
	if err := al.Alert(context.WithoutCancel(ctx), a); err != nil {
		log.Error("alert not delivered", "error", err, "alert", a.Message)
	}
}

// S3's own caps, enforced on what a source sends: an object past either is
// not stored and its error is recorded, so a hostile source cannot grow
// manifests (and what prune and restore read) past what S3 allows.
const (
	MaxKeyBytes      = 1024 // object key, in bytes
	MaxUserMetaBytes = 2048 // user metadata: the bytes of every key and value
)

func metaBytes(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}
