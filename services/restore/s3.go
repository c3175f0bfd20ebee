package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// How ToS3 writes (see ToS3 for the whole picture):
//
//	| object size      | requests                        | held in memory       |
//	|------------------|---------------------------------|----------------------|
//	| <= part size     | one PUT with the body's SHA-256 | the object           |
//	| >  part size     | initiate, parts in parallel,    | each part until its  |
//	|                  | complete (abort on any error)   | upload is done       |
//
// Every buffer is charged to one byte budget (Options.Buffer) before it is
// filled, so memory stays bounded whatever the mix of objects; part-sized
// buffers are reused, and chunk readers too (their pack files stay open).
// Each body goes out with its SHA-256 in the signed request
// (X-Amz-Content-Sha256), computed from the bytes the store just verified,
// so the target refuses anything that arrived different. That also spares
// minio-go's streaming signature (a chunk signature per 64 KiB over plain
// HTTP) and lets it retry a request, since the body can be read again.

// maxParts is the most parts an S3 multipart upload may have.
const maxParts = 10000

// initiateTimeout bounds the request that starts a multipart upload.
const initiateTimeout = time.Minute

// s3Writer writes objects to one bucket. Close it.
type s3Writer struct {
	s      *store.Store
	core   minio.Core
	dst    Target
	o      Options
	budget *budget

	// Chunk readers are reused from object to object, so a worker keeps
	// its pack files open instead of opening one per small object.
	mu      sync.Mutex
	idle    []*store.ChunkReader
	readers []*store.ChunkReader
	// Part-sized buffers are reused; idle ones are kept only as long as
	// they and those in use fit the budget, so they never add to it.
	spare    [][]byte
	maxSpare int
}

func newS3Writer(s *store.Store, cl *minio.Client, dst Target, o Options) *s3Writer {
	limit := int64(o.Buffer)
	if limit < int64(o.PartSize) {
		limit = int64(o.PartSize)
	}
	return &s3Writer{s: s, core: minio.Core{Client: cl}, dst: dst, o: o, budget: newBudget(limit),
		maxSpare: int(limit / int64(o.PartSize))}
}

// Close closes every chunk reader.
func (w *s3Writer) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, cr := range w.readers {
		cr.Close()
	}
	w.readers, w.idle, w.spare = nil, nil, nil
}

// read writes the content of ob to dst, checking every chunk, as
// store.WriteObject does but with a reused chunk reader.
func (w *s3Writer) read(ctx context.Context, ob store.Object, dst io.Writer) error {
	w.mu.Lock()
	var cr *store.ChunkReader
	if n := len(w.idle); n > 0 {
		cr, w.idle = w.idle[n-1], w.idle[:n-1]
	} else {
		cr = w.s.NewChunkReader()
		w.readers = append(w.readers, cr)
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.idle = append(w.idle, cr)
		w.mu.Unlock()
	}()
	var n int64
	for _, id := range ob.Chunks {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		data, err := cr.Read(id)
		if err != nil {
			return fmt.Errorf("object %q: %w", ob.Key, err)
		}
		if _, err := dst.Write(data); err != nil {
			return err
		}
		n += int64(len(data))
	}
	if n != ob.Size {
		return fmt.Errorf("object %q: read %d bytes, manifest says %d: %w", ob.Key, n, ob.Size, store.ErrCorrupt)
	}
	return nil
}

// buffer returns a buffer of length n, charged to the budget; give it
// back with free.
func (w *s3Writer) buffer(ctx context.Context, n int64) ([]byte, error) {
	if err := w.budget.acquire(ctx, n); err != nil {
		return nil, err
	}
	if n == int64(w.o.PartSize) {
		w.mu.Lock()
		if k := len(w.spare); k > 0 {
			b := w.spare[k-1]
			w.spare = w.spare[:k-1]
			w.mu.Unlock()
			return b[:n], nil
		}
		w.mu.Unlock()
	}
	return make([]byte, n), nil
}

func (w *s3Writer) free(b []byte) {
	if uint64(cap(b)) == w.o.PartSize {
		w.mu.Lock()
		if len(w.spare) < w.maxSpare {
			w.spare = append(w.spare, b[:0])
		}
		w.mu.Unlock()
	}
	w.budget.release(int64(len(b)))
}

// write restores one object.
func (w *s3Writer) write(ctx context.Context, ob store.Object) error {
	name := w.dst.Prefix + string(ob.Key)
	if ob.Size < 0 {
		return fmt.Errorf("restore %q: negative size %d: %w", ob.Key, ob.Size, store.ErrCorrupt)
	}
	if uint64(ob.Size) <= w.o.PartSize {
		return w.single(ctx, ob, name)
	}
	return w.multipart(ctx, ob, name)
}

// single reads the whole object (every chunk checked), then PUTs it.
// Nothing is sent for an object the store cannot vouch for.
func (w *s3Writer) single(ctx context.Context, ob store.Object, name string) error {
	buf, err := w.buffer(ctx, ob.Size)
	if err != nil {
		return fmt.Errorf("restore %q: %w", ob.Key, err)
	}
	defer w.free(buf)
	fw := &fillWriter{buf: buf[:0], key: ob.Key}
	if err := w.read(ctx, ob, fw); err != nil {
		return fmt.Errorf("restore %q: read from store: %w", ob.Key, err)
	}
	sum := sha256.Sum256(fw.buf)
	_, err = w.core.PutObject(ctx, w.dst.Bucket, name, bytes.NewReader(fw.buf), int64(len(fw.buf)), "", hex.EncodeToString(sum[:]),
		minio.PutObjectOptions{ContentType: ob.ContentType, UserMetadata: ob.UserMeta, DisableContentSha256: true})
	if err != nil {
		return fmt.Errorf("restore %q to %s bucket %s: %w", ob.Key, w.dst.Endpoint, w.dst.Bucket, err)
	}
	w.o.Logger.Debug("restored", "key", fmt.Sprintf("%q", ob.Key), "size", ob.Size)
	return nil
}

// fillWriter collects an object into a buffer of its recorded size and
// refuses a byte more.
type fillWriter struct {
	buf []byte
	key []byte
}

func (f *fillWriter) Write(p []byte) (int, error) {
	if len(p) > cap(f.buf)-len(f.buf) {
		return 0, fmt.Errorf("the store holds more bytes than the recorded size %d: %w", cap(f.buf), store.ErrCorrupt)
	}
	f.buf = append(f.buf, p...)
	return len(p), nil
}

// partSize returns the part size for an object of size bytes: the
// configured one, raised (in whole MiB) when the object would need more
// than maxParts parts.
func (w *s3Writer) partSize(size int64) int64 {
	ps := int64(w.o.PartSize)
	if need := (size + maxParts - 1) / maxParts; need > ps {
		ps = (need + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return ps
}

// multipart streams an object in parts: the store is read in order while
// earlier parts upload; the object appears only when the upload is
// completed, and any failure aborts it, so no partial object is left.
func (w *s3Writer) multipart(ctx context.Context, ob store.Object, name string) (err error) {
	// Initiating is not canceled with ctx: a cancel between the server
	// creating the upload and minio-go reading its ID would leave an
	// upload nobody can abort. ctx is checked right after.
	ictx, icancel := context.WithTimeout(context.WithoutCancel(ctx), initiateTimeout)
	id, err := w.core.NewMultipartUpload(ictx, w.dst.Bucket, name,
		minio.PutObjectOptions{ContentType: ob.ContentType, UserMetadata: ob.UserMeta})
	icancel()
	if err != nil {
		return fmt.Errorf("restore %q to %s bucket %s: %w", ob.Key, w.dst.Endpoint, w.dst.Bucket, err)
	}
	defer func() {
		if err != nil {
			if aerr := w.core.AbortMultipartUpload(context.WithoutCancel(ctx), w.dst.Bucket, name, id); aerr != nil {
				w.o.Logger.Error("abort multipart upload", "key", fmt.Sprintf("%q", name), "error", aerr)
			}
		}
	}()

	if ctx.Err() != nil {
		return fmt.Errorf("restore %q: %w", ob.Key, context.Cause(ctx))
	}
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		parts   []minio.CompletePart
		upErr   error
		partLen = w.partSize(ob.Size)
	)
	pw := &partWriter{ctx: pctx, w: w, size: ob.Size, partLen: partLen, send: func(num int, buf []byte) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.free(buf)
			sum := sha256.Sum256(buf)
			p, err := w.core.PutObjectPart(pctx, w.dst.Bucket, name, id, num, bytes.NewReader(buf), int64(len(buf)),
				minio.PutObjectPartOptions{Sha256Hex: hex.EncodeToString(sum[:]), DisableContentSha256: true})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if upErr == nil {
					upErr = err
					cancel(err)
				}
				return
			}
			parts = append(parts, minio.CompletePart{PartNumber: num, ETag: p.ETag})
		}()
	}}
	rerr := w.read(pctx, ob, pw)
	if rerr == nil {
		rerr = pw.finish()
	}
	pw.drop()
	if rerr != nil {
		cancel(rerr)
	}
	wg.Wait()
	switch {
	case upErr != nil:
		return fmt.Errorf("restore %q to %s bucket %s: %w", ob.Key, w.dst.Endpoint, w.dst.Bucket, upErr)
	case rerr != nil && ctx.Err() != nil:
		return fmt.Errorf("restore %q: %w", ob.Key, context.Cause(ctx))
	case rerr != nil:
		return fmt.Errorf("restore %q: read from store: %w", ob.Key, rerr)
	}
	slices.SortFunc(parts, func(a, b minio.CompletePart) int { return a.PartNumber - b.PartNumber })
	if _, err := w.core.CompleteMultipartUpload(ctx, w.dst.Bucket, name, id, parts, minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("restore %q to %s bucket %s: complete upload: %w", ob.Key, w.dst.Endpoint, w.dst.Bucket, err)
	}
	w.o.Logger.Debug("restored", "key", fmt.Sprintf("%q", ob.Key), "size", ob.Size, "parts", len(parts))
	return nil
}

// partWriter cuts an object into parts of partLen bytes (the last one
// shorter) and hands each full part to send, which owns it from then on.
type partWriter struct {
	ctx     context.Context
	w       *s3Writer
	size    int64 // the object's recorded size
	partLen int64
	sent    int64 // bytes in parts handed to send
	num     int   // number of the part in buf
	buf     []byte
	send    func(num int, buf []byte)
}

func (p *partWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		if p.buf == nil {
			rest := p.size - p.sent
			if rest <= 0 {
				return n, fmt.Errorf("the store holds more bytes than the recorded size %d: %w", p.size, store.ErrCorrupt)
			}
			buf, err := p.w.buffer(p.ctx, min(p.partLen, rest))
			if err != nil {
				return n, err
			}
			p.buf, p.num = buf[:0], p.num+1
		}
		k := min(len(b), cap(p.buf)-len(p.buf))
		p.buf = append(p.buf, b[:k]...)
		b, n = b[k:], n+k
		if len(p.buf) == cap(p.buf) {
			p.sent += int64(len(p.buf))
			p.send(p.num, p.buf)
			p.buf = nil
		}
	}
	return n, nil
}

// finish checks that every byte was handed on.
func (p *partWriter) finish() error {
	if p.buf != nil || p.sent != p.size {
		return fmt.Errorf("read %d of %d bytes: %w", p.sent+int64(len(p.buf)), p.size, store.ErrCorrupt)
	}
	return nil
}

// drop frees a part that was never sent.
func (p *partWriter) drop() {
	if p.buf != nil {
		p.w.free(p.buf[:cap(p.buf)])
		p.buf = nil
	}
}

// budget is a weighted semaphore over bytes, first come first served, so
// a part-sized request is not starved by a stream of small ones. A
// request larger than the whole budget takes all of it.
type budget struct {
	mu      sync.Mutex
	limit   int64
	used    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func newBudget(limit int64) *budget { return &budget{limit: limit} }

func (b *budget) clamp(n int64) int64 { return min(n, b.limit) }

func (b *budget) acquire(ctx context.Context, n int64) error {
	n = b.clamp(n)
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.limit {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	wt := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, wt)
	b.mu.Unlock()
	select {
	case <-wt.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		select {
		case <-wt.ready:
			// Granted meanwhile: give it back.
			b.used -= n
		default:
			b.waiters = slices.DeleteFunc(b.waiters, func(x *budgetWaiter) bool { return x == wt })
		}
		b.grant()
		b.mu.Unlock()
		return context.Cause(ctx)
	}
}

func (b *budget) release(n int64) {
	n = b.clamp(n)
	b.mu.Lock()
	b.used -= n
	if b.used < 0 {
		b.mu.Unlock()
		panic("restore: budget released more than acquired")
	}
	b.grant()
	b.mu.Unlock()
}

// grant wakes waiters in order while they fit; b.mu is held.
func (b *budget) grant() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.limit {
		wt := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.used += wt.n
		close(wt.ready)
	}
}
