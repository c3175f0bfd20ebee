package ingest

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/minio/crc64nvme"
)

// checksumNew makes a hash for each x-amz-checksum-* algorithm the pull can
// verify. The header carries the big-endian digest in base64.
var checksumNew = map[string]func() hash.Hash{
	"crc32":     func() hash.Hash { return crc32.NewIEEE() },
	"crc32c":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"crc64nvme": func() hash.Hash { return crc64nvme.New() },
	"sha1":      sha1.New,
	"sha256":    sha256.New,
}

// singlePartETag matches an ETag that is the MD5 of the body (a single-part
// upload); multipart ETags end in "-<parts>".
var singlePartETag = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)

// errBodyChanged means the object was replaced while it was being read.
var errBodyChanged = errors.New("object changed while it was read")

// body reads one object version from a bucket, resuming a transfer cut
// mid-way with a Range GET from the last byte received, and hashing what it
// reads so that verify can check it against what the source declared.
type body struct {
	ctx      context.Context
	b        bucket
	e        entry
	retries  int // resumes allowed after a cut
	backoff  func(attempt int) time.Duration
	checkMD5 bool
	log      hclog.Logger
	onRead   func(n int)
	rc       io.ReadCloser
	off      int64
	first    *bodyInfo
	md5      hash.Hash
	sums     map[string]hash.Hash
	resumes  int
}

func newBody(ctx context.Context, b bucket, e entry, retries int, checkMD5 bool, log hclog.Logger, onRead func(int)) *body {
	return &body{ctx: ctx, b: b, e: e, retries: retries, backoff: backoff, checkMD5: checkMD5, log: log, onRead: onRead}
}

// backoff is 100ms, 200ms, 400ms, ... capped at 10s.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 7)
	return min(d, 10*time.Second)
}

// open sends the GET (or, after a cut, the Range GET) for the rest of the
// body.
func (r *body) open() error {
	rc, bi, err := r.b.Get(r.ctx, r.e, r.off)
	if err != nil {
		return err
	}
	if bi.ETag != "" && r.e.ETag != "" && bi.ETag != r.e.ETag {
		rc.Close()
		return fmt.Errorf("ETag %q, listing said %q: %w", bi.ETag, r.e.ETag, errBodyChanged)
	}
	if bi.Length >= 0 && bi.Length != r.e.Size-r.off {
		rc.Close()
		if r.off == 0 {
			return fmt.Errorf("GET returned a Content-Length of %d bytes, listing said %d: %w", bi.Length, r.e.Size, errBodyChanged)
		}
		return fmt.Errorf("Range GET from %d returned a Content-Length of %d bytes, want %d", r.off, bi.Length, r.e.Size-r.off)
	}
	if r.first == nil {
		r.first = &bi
		if r.checkMD5 && singlePartETag.MatchString(r.e.ETag) {
			r.md5 = md5.New()
		}
		for alg, v := range bi.Checksums {
			if nh, ok := checksumNew[alg]; ok && !composite(v, bi.ChecksumType) {
				if r.sums == nil {
					r.sums = map[string]hash.Hash{}
				}
				r.sums[alg] = nh()
			}
		}
	}
	r.rc = rc
	return nil
}

func composite(v, typ string) bool {
	return strings.EqualFold(typ, "COMPOSITE") || strings.Contains(v, "-")
}

// Read implements io.Reader for the store's Put. It never returns more than
// the listed size: a longer body is an error.
func (r *body) Read(p []byte) (int, error) {
	for {
		if r.rc == nil {
			if err := r.open(); err != nil {
				if r.off == 0 || errors.Is(err, errBodyChanged) || !retryable(err) || r.resumes >= r.retries {
					return 0, err
				}
				r.resumes++
				r.log.Warn("Range GET failed; retrying", "key", quoteKey(r.e.Key), "offset", r.off, "attempt", r.resumes, "error", err)
				if err := sleep(r.ctx, r.backoff(r.resumes-1)); err != nil {
					return 0, err
				}
				continue
			}
		}
		if rest := r.e.Size - r.off; int64(len(p)) > rest+1 {
			p = p[:rest+1] // room for one byte too many, to notice a long body
		}
		n, err := r.rc.Read(p)
		if n > 0 {
			if r.off+int64(n) > r.e.Size {
				return 0, fmt.Errorf("body is longer than the %d bytes listed", r.e.Size)
			}
			r.off += int64(n)
			if r.md5 != nil {
				r.md5.Write(p[:n])
			}
			for _, h := range r.sums {
				h.Write(p[:n])
			}
			if r.onRead != nil {
				r.onRead(n)
			}
		}
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF) && r.off == r.e.Size:
			return n, io.EOF
		case errors.Is(err, io.EOF):
			err = fmt.Errorf("body ended at byte %d of %d: %w", r.off, r.e.Size, io.ErrUnexpectedEOF)
		}
		r.rc.Close()
		r.rc = nil
		if cerr := r.ctx.Err(); cerr != nil {
			return n, cerr
		}
		if r.resumes >= r.retries {
			return n, fmt.Errorf("transfer cut at byte %d of %d, %d resumes failed: %w", r.off, r.e.Size, r.resumes, err)
		}
		r.resumes++
		r.log.Warn("transfer cut; resuming with a Range GET", "key", quoteKey(r.e.Key), "offset", r.off, "size", r.e.Size, "attempt", r.resumes, "error", err)
		if err := sleep(r.ctx, r.backoff(r.resumes-1)); err != nil {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Close closes the open response body, if any.
func (r *body) Close() error {
	if r.rc != nil {
		err := r.rc.Close()
		r.rc = nil
		return err
	}
	return nil
}

// verify checks the body read (size bytes) against what the listing and the
// GET declared, and returns the checksums to record: "md5" (hex) when the
// ETag was checked, and "<alg>" (hex) for each x-amz-checksum verified.
// Composite checksums of multipart uploads cannot be recomputed from the
// body; they are recorded as declared under "<alg>-composite".
func (r *body) verify(size int64) (map[string]string, error) {
	if size != r.e.Size {
		return nil, fmt.Errorf("body is %d bytes, listing said %d", size, r.e.Size)
	}
	out := map[string]string{}
	if r.md5 != nil {
		got := hex.EncodeToString(r.md5.Sum(nil))
		if !strings.EqualFold(got, r.e.ETag) {
			return nil, fmt.Errorf("body MD5 %s does not match ETag %s", got, r.e.ETag)
		}
		out["md5"] = got
	}
	if r.first != nil {
		for _, alg := range slices.Sorted(maps.Keys(r.first.Checksums)) {
			v := r.first.Checksums[alg]
			h, ok := r.sums[alg]
			if !ok {
				if composite(v, r.first.ChecksumType) {
					out[alg+"-composite"] = v
				}
				continue
			}
			want, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, fmt.Errorf("x-amz-checksum-%s %q is not base64", alg, v)
			}
			got := h.Sum(nil)
			if hex.EncodeToString(got) != hex.EncodeToString(want) {
				return nil, fmt.Errorf("body x-amz-checksum-%s %s does not match the declared %s", alg, base64.StdEncoding.EncodeToString(got), v)
			}
			out[alg] = hex.EncodeToString(got)
		}
	}
	return out, nil
}

// metadata returns content type and user metadata from the first GET.
func (r *body) metadata() (string, map[string]string) {
	if r.first == nil {
		return "", nil
	}
	return r.first.ContentType, r.first.UserMeta
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// quoteKey renders a key for logs and errors: Go-quoted, so NULs, newlines
// and invalid UTF-8 cannot forge log lines.
func quoteKey(k []byte) string {
	const max = 512
	if len(k) > max {
		return fmt.Sprintf("%q...(%d bytes)", k[:max], len(k))
	}
	return fmt.Sprintf("%q", k)
}
