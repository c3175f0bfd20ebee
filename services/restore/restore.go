// Package restore gets data back out of a Holdfast store: it writes the
// objects of one snapshot (all of them, those whose key starts with a
// prefix, or one exact key) to an S3-compatible bucket with minio-go
// (ToS3) or to a local directory (ToDir). It streams the snapshot twice
// (once to count, once to write): for a snapshot a pull wrote (sorted),
// memory does not grow with its object count.
//
// Every chunk is checked by the store as it is read (its keyed ID and its
// AEAD tag), so damaged data is never written out silently: the restore
// fails and names the object. When a snapshot records a key more than once
// (versions of an S3 object) its current record is restored (the source's
// latest version: store.WalkCurrent); a key whose current record is a
// delete marker is skipped. VerifyReceipt verifies a
// snapshot's signed receipt offline against the manifest the store holds.
//
// Keys are data. ToS3 writes each object under the target prefix followed
// by its original key bytes, with its content type and user metadata: an
// object up to the part size as one PUT once all of it has been read and
// checked, a larger one as a multipart upload whose parts go out in
// parallel while the store reads on, completed only when every part is in
// (aborted otherwise). Every body is sent with its SHA-256 in the signed
// request, so the target refuses bytes that differ from what the store
// verified; memory is bounded by Options.Buffer.
// ToDir writes a key at the path it names only when it is a clean relative
// path (see SafePath); every other key goes to
// DIR/.holdfast-unsafe-keys/<hex sha256 of the key>, listed in
// DIR/.holdfast-unsafe-keys/index.tsv with the Go-quoted key. ToDir never
// follows a symlink and never overwrites anything: it refuses a target
// directory that is not empty.
//
// Limits: object versions other than the current one of each key, modification
// times, ETags and version IDs are not restored (S3 sets its own); ToS3
// overwrites objects of the same name in the target bucket; a key the
// target refuses (MinIO: ".." segments, invalid UTF-8, over 1024 bytes)
// fails the restore; a failed restore leaves the objects it already wrote
// in place, but never a partial file or an upload of the failed object.
// Reading a store from the appliance's bare data disk is package disk
// (services/restore/disk); restoring to a removable disk is not done yet.
package restore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/firmware/receipt"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/s3client"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// Defaults applied to zero Options fields.
const (
	DefaultParallel   = 4  // ToDir
	DefaultS3Parallel = 16 // ToS3: small objects are mostly waiting on the target
	DefaultPartSize   = 16 << 20
	DefaultBuffer     = 4 * DefaultPartSize
	// MinPartSize is the smallest part S3 accepts (except for the last).
	MinPartSize = 5 << 20
)

// Target is the S3 bucket a restore writes to: config.S3's Endpoint,
// Bucket, Prefix (prepended to every key), Region, AccessKey, SecretKey,
// TLS and CAPEM are used. The credentials need write rights.
type Target = config.S3

// Options tune a restore. The zero value is usable.
type Options struct {
	// Exact restores only the object whose key equals the prefix argument,
	// instead of every object whose key starts with it.
	Exact bool
	// Parallel is the number of objects written at once (when zero,
	// DefaultParallel for ToDir and DefaultS3Parallel for ToS3).
	Parallel int
	// PartSize is the multipart part size for ToS3 (DefaultPartSize when
	// zero); objects larger than it are uploaded in parts.
	PartSize uint64
	// Buffer bounds the bytes ToS3 holds in object and part buffers at
	// once (DefaultBuffer when zero; never less than PartSize). With the
	// defaults, up to 4 parts of large objects upload at once.
	Buffer uint64
	// Logger gets debug messages; nil means none.
	Logger hclog.Logger
	// Progress, when set, is called after every object written (calls are
	// serialised).
	Progress func(Progress)
}

// Progress is the state of a running restore.
type Progress struct {
	Key          []byte // the object just written
	Objects      int    // objects written so far
	TotalObjects int
	Bytes        int64 // bytes written so far
	TotalBytes   int64
}

// Result summarises a finished restore.
type Result struct {
	Objects        int
	Bytes          int64
	DeleteMarkers  int // keys skipped because their last record is a delete marker
	UnsafeKeys     int // ToDir: keys written under UnsafeDir
	SnapshotSource string
}

func (o Options) withDefaults(parallel int) (Options, error) {
	if o.Parallel == 0 {
		o.Parallel = parallel
	}
	if o.Parallel < 0 {
		return o, fmt.Errorf("restore: parallel %d must be positive", o.Parallel)
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize {
		return o, fmt.Errorf("restore: part size %d is below S3's minimum of %d bytes", o.PartSize, MinPartSize)
	}
	if o.Buffer == 0 {
		o.Buffer = DefaultBuffer
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o, nil
}

// Selection is what a restore of one snapshot writes: the current record
// (store.WalkCurrent) of every key that matches the prefix (or equals it,
// with Exact) and is not a delete marker.
type Selection struct {
	Manifest      *store.Manifest // the snapshot's summary (Objects empty)
	Objects       int
	Bytes         int64
	DeleteMarkers int // matching keys whose current record is a delete marker
	s             *store.Store
	id            string
	match         func([]byte) bool
	rng           store.KeyRange // the keys match can accept: the walk seeks
}

// Select counts what a restore of snapshot id writes, in one streaming
// pass over the snapshot (store.WalkCurrent: memory does not grow with the
// object count of a sorted snapshot). It fails with store.ErrNotFound when
// a prefix or exact key matches nothing.
func Select(s *store.Store, id, prefix string, exact bool) (*Selection, error) {
	sel := &Selection{s: s, id: id, match: func(k []byte) bool {
		if exact {
			return string(k) == prefix
		}
		return strings.HasPrefix(string(k), prefix)
	}}
	sel.rng = store.PrefixRange([]byte(prefix))
	if exact {
		sel.rng = store.KeyRange{From: []byte(prefix), To: append([]byte(prefix), 0)}
	}
	m, err := s.WalkCurrentRange(id, sel.rng, sel.match, func(o store.Object) error {
		if o.DeleteMarker {
			sel.DeleteMarkers++
			return nil
		}
		sel.Objects++
		sel.Bytes += o.Size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("restore: read snapshot %s: %w", id, err)
	}
	sel.Manifest = m
	if sel.Objects == 0 && (exact || prefix != "") {
		return nil, fmt.Errorf("restore: snapshot %s holds no object matching %q: %w", id, prefix, store.ErrNotFound)
	}
	return sel, nil
}

// each walks the selection again, handing fn each object to write.
func (sel *Selection) each(fn func(store.Object) error) error {
	_, err := sel.s.WalkCurrentRange(sel.id, sel.rng, sel.match, func(o store.Object) error {
		if o.DeleteMarker {
			return nil
		}
		return fn(o)
	})
	return err
}

// runAll calls write for every object of sel with o.Parallel workers,
// walking the snapshot as they go. The first error stops the rest; it is
// returned.
func runAll(ctx context.Context, sel *Selection, o Options, write func(context.Context, store.Object) error) (int, int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu       sync.Mutex
		firstErr error
		done     int
		bytesW   int64
		wg       sync.WaitGroup
	)
	jobs := make(chan store.Object)
	for range min(o.Parallel, max(sel.Objects, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ob := range jobs {
				err := write(ctx, ob)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel(err)
					}
				} else {
					done++
					bytesW += ob.Size
					if o.Progress != nil {
						o.Progress(Progress{Key: ob.Key, Objects: done, TotalObjects: sel.Objects, Bytes: bytesW, TotalBytes: sel.Bytes})
					}
				}
				mu.Unlock()
			}
		}()
	}
	walkErr := sel.each(func(ob store.Object) error {
		// The snapshot is read again: its objects own their buffers.
		ob.Key = bytes.Clone(ob.Key)
		select {
		case jobs <- ob:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	close(jobs)
	wg.Wait()
	switch {
	case firstErr != nil:
	case walkErr != nil:
		firstErr = fmt.Errorf("restore: read snapshot %s: %w", sel.id, walkErr)
	case ctx.Err() != nil:
		firstErr = fmt.Errorf("restore: %w", context.Cause(ctx))
	}
	return done, bytesW, firstErr
}

// NewClient returns a minio-go client for t.
func NewClient(t Target) (*minio.Client, error) {
	cl, _, err := s3client.New(t, s3client.Options{})
	if err != nil {
		return nil, fmt.Errorf("restore target: %w", err)
	}
	return cl, nil
}

// ToS3 restores the selected objects of snapshot snapshotID to the bucket
// of dst, each under dst.Prefix + key, with its content type and user
// metadata. Objects larger than opts.PartSize are uploaded in parts. The
// bucket must exist.
func ToS3(ctx context.Context, s *store.Store, snapshotID, prefix string, dst Target, opts Options) (*Result, error) {
	sel, err := Select(s, snapshotID, prefix, opts.Exact)
	if err != nil {
		return nil, err
	}
	return ToS3Selected(ctx, sel, dst, opts)
}

// ToS3Selected is ToS3 for a selection the caller counted already (the
// worker reports the totals before the first object is written), so the
// snapshot is not walked a second time to count it. opts.Exact is the
// selection's.
func ToS3Selected(ctx context.Context, sel *Selection, dst Target, opts Options) (*Result, error) {
	o, err := opts.withDefaults(DefaultS3Parallel)
	if err != nil {
		return nil, err
	}
	if dst.Bucket == "" {
		return nil, errors.New("restore: target bucket is empty")
	}
	cl, err := NewClient(dst)
	if err != nil {
		return nil, err
	}
	ok, err := cl.BucketExists(ctx, dst.Bucket)
	if err != nil {
		return nil, fmt.Errorf("restore: target %s bucket %q: %w", dst.Endpoint, dst.Bucket, err)
	}
	if !ok {
		return nil, fmt.Errorf("restore: target %s has no bucket %q", dst.Endpoint, dst.Bucket)
	}
	o.Logger.Info("restore to S3", "snapshot", sel.id, "objects", sel.Objects, "endpoint", dst.Endpoint, "bucket", dst.Bucket)
	w := newS3Writer(sel.s, cl, dst, o)
	defer w.Close()
	n, b, err := runAll(ctx, sel, o, w.write)
	res := &Result{Objects: n, Bytes: b, DeleteMarkers: sel.DeleteMarkers, SnapshotSource: sel.Manifest.Source}
	return res, err
}

// VerifyReceipt verifies the signed receipt of snapshot id against pub
// (the appliance's receipt key) and against the manifest the store holds.
// A snapshot without a receipt fails: the caller asked for the check.
func VerifyReceipt(s *store.Store, id string, pub *ecdsa.PublicKey) (*receipt.Receipt, error) {
	raw, err := s.Receipt(id)
	if err != nil {
		return nil, fmt.Errorf("receipt of snapshot %s: %w", id, err)
	}
	d, err := s.ManifestDigest(id)
	if err != nil {
		return nil, fmt.Errorf("receipt of snapshot %s: %w", id, err)
	}
	return receipt.VerifyFor(raw, pub, id, d)
}
