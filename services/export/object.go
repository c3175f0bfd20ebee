package export

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// objectParams are the query parameters GET and HEAD Object accept.
var objectParams = []string{"versionId", "partNumber", "response-content-type", "response-content-language",
	"response-expires", "response-cache-control", "response-content-disposition", "response-content-encoding"}

// responseOverrides map response-* parameters to the header they set.
var responseOverrides = [][2]string{
	{"response-content-type", "Content-Type"},
	{"response-content-language", "Content-Language"},
	{"response-expires", "Expires"},
	{"response-cache-control", "Cache-Control"},
	{"response-content-disposition", "Content-Disposition"},
	{"response-content-encoding", "Content-Encoding"},
}

// emptyMD5 is the MD5 of no bytes: the ETag of an empty object.
const emptyMD5 = "d41d8cd98f00b204e9800998ecf8427e"

// checksumAlgs are the full-object checksums the store may record (hex)
// that S3 sends as x-amz-checksum-<alg> (base64), with their digest sizes.
var checksumAlgs = []struct {
	name string
	size int
}{{"crc32", 4}, {"crc32c", 4}, {"crc64nvme", 8}, {"sha1", 20}, {"sha256", 32}}

// chunkSource reads chunks by ID, each checked by the store; a
// *store.ChunkReader is one (tests put in others).
type chunkSource interface {
	Read(id store.ChunkID) ([]byte, error)
	Close()
}

func storeChunks(st *store.Store) chunkSource { return st.NewChunkReader() }

func (s *Server) objectOp(req *request, g *generation) *s3Error {
	b, ok := g.buckets[req.bucket]
	if !ok {
		return errNoSuchBucket()
	}
	if p, bad := unexpectedParam(req.q, objectParams...); bad {
		return errNotImplemented(fmt.Sprintf("%s (query parameter %q)", req.op, p))
	}
	if v, ok := req.q.get("versionId"); ok && v != "null" {
		return errNoSuchVersion()
	}
	if _, ok := req.q.get("partNumber"); ok {
		return errNotImplemented(req.op + " by part number")
	}
	seg, key, ok := strings.Cut(req.object, "/")
	if !ok {
		return errNoSuchKey()
	}
	si, ok := b.snapshot(seg)
	if !ok {
		return errNoSuchKey()
	}
	v, err := s.views.get(req.r.Context(), g.st, si.ID)
	if err != nil {
		if req.r.Context().Err() == nil {
			s.log.Error("cannot read snapshot", "bucket", b.name, "snapshot", si.ID, "error", err)
		}
		return errInternal()
	}
	o, ok, err := v.find(key)
	if err != nil {
		if req.r.Context().Err() == nil {
			s.log.Error("cannot read snapshot", "bucket", b.name, "snapshot", si.ID, "error", err)
		}
		return errInternal()
	}
	if !ok {
		return errNoSuchKey()
	}
	return s.serveObject(req, g.st, o, si.Started)
}

// etagOf is the ETag the export gives an object: the MD5 its pull
// verified, else the ETag the source reported, else (a local file, say) a
// stable value derived from its chunk IDs that ends in "-<chunks>" like a
// multipart ETag, so no client mistakes it for an MD5. An empty object's
// is the MD5 of nothing.
func etagOf(o *store.Object) string {
	if m := o.Checksums["md5"]; isHex(m, 16) {
		return strings.ToLower(m)
	}
	if e := o.ETag; e != "" && len(e) <= 128 && plainETag(e) {
		return e
	}
	if len(o.Chunks) == 0 {
		return emptyMD5
	}
	h := sha256.New()
	h.Write([]byte("holdfast export etag v1"))
	for _, c := range o.Chunks {
		h.Write(c[:])
	}
	return hex.EncodeToString(h.Sum(nil))[:32] + "-" + strconv.Itoa(len(o.Chunks))
}

func isHex(s string, bytes int) bool {
	if len(s) != 2*bytes {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// plainETag reports whether e can go between quotes in a header and XML.
func plainETag(e string) bool {
	for i := 0; i < len(e); i++ {
		if c := e[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// token reports whether s is an HTTP header field name.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// headerValue reports whether s can be sent as a header value unchanged.
func headerValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func (s *Server) serveObject(req *request, st *store.Store, o *store.Object, snapped time.Time) *s3Error {
	r, h := req.r, req.w.Header()
	etag := etagOf(o)
	mod := o.ModTime
	if mod.IsZero() {
		mod = snapped
	}
	mod = mod.UTC().Truncate(time.Second)
	h.Set("ETag", `"`+etag+`"`)
	h.Set("Last-Modified", mod.Format(http.TimeFormat))
	if serr := checkPreconditions(r, etag, mod); serr != nil {
		return serr
	}
	h.Set("Accept-Ranges", "bytes")
	ct := o.ContentType
	if ct == "" || !headerValue(ct) {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	for k, v := range o.UserMeta {
		if token(k) && headerValue(v) {
			h.Set("X-Amz-Meta-"+k, v)
		} else {
			s.log.Debug("user metadata not sent: not a valid header", "key", quote(string(o.Key)), "name", quote(k))
		}
	}
	if r.Method == http.MethodGet {
		for _, ov := range responseOverrides {
			if v, ok := req.q.get(ov[0]); ok && headerValue(v) {
				h.Set(ov[1], v)
			}
		}
	}
	start, end, partial, serr := parseRange(r.Header.Get("Range"), o.Size)
	if serr != nil {
		return serr
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, o.Size))
	} else if strings.EqualFold(r.Header.Get("X-Amz-Checksum-Mode"), "ENABLED") {
		sent := false
		for _, a := range checksumAlgs {
			if v := o.Checksums[a.name]; isHex(v, a.size) {
				raw, _ := hex.DecodeString(v)
				h.Set("X-Amz-Checksum-"+a.name, base64.StdEncoding.EncodeToString(raw))
				sent = true
			}
		}
		if sent {
			h.Set("X-Amz-Checksum-Type", "FULL_OBJECT")
		}
	}
	h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	if r.Method == http.MethodHead {
		req.w.WriteHeader(status)
		return nil
	}
	return s.stream(req, st, o, start, end, status)
}

// checkPreconditions applies If-Match, If-Unmodified-Since, If-None-Match
// and If-Modified-Since as RFC 9110 orders them.
func checkPreconditions(r *http.Request, etag string, mod time.Time) *s3Error {
	if im := r.Header.Get("If-Match"); im != "" {
		if !etagMatches(im, etag) {
			return errPrecondition()
		}
	} else if ius := r.Header.Get("If-Unmodified-Since"); ius != "" {
		if t, err := http.ParseTime(ius); err == nil && mod.After(t) {
			return errPrecondition()
		}
	}
	notModified := &s3Error{status: http.StatusNotModified, code: "NotModified", message: "not modified"}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if etagMatches(inm, etag) {
			return notModified
		}
	} else if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !mod.After(t) {
			return notModified
		}
	}
	return nil
}

// etagMatches reports whether a list of entity tags (or "*") names etag.
func etagMatches(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		t = strings.TrimPrefix(t, "W/")
		if t == "*" || strings.Trim(t, `"`) == etag {
			return true
		}
	}
	return false
}

// parseRange parses a Range header for an object of size bytes. It
// returns the inclusive byte range to send and whether it is partial. A
// header that is not one byte range is ignored (the whole object is
// sent), as S3 does; a range that starts past the end is InvalidRange.
func parseRange(hdr string, size int64) (start, end int64, partial bool, serr *s3Error) {
	whole := func() (int64, int64, bool, *s3Error) { return 0, size - 1, false, nil }
	spec, ok := strings.CutPrefix(strings.TrimSpace(hdr), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return whole()
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return whole()
	}
	if a == "" { // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return whole()
		}
		if n == 0 || size == 0 {
			return 0, 0, false, errInvalidRange(size)
		}
		return max(size-n, 0), size - 1, true, nil
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return whole()
	}
	end = size - 1
	if b != "" {
		if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
			return whole()
		}
		end = min(end, size-1)
	}
	if start >= size {
		return 0, 0, false, errInvalidRange(size)
	}
	return start, end, true, nil
}

// stream sends bytes start..end (inclusive) of o, reading and
// authenticating each chunk from the store as it goes. Chunks wholly
// before start whose size is known are not read. When a full object is
// sent, the last chunk goes out only once the chunk sizes are known to add
// up to the recorded size, so a client never receives a whole body the
// store cannot vouch for; a failure after the headers drops the connection.
func (s *Server) stream(req *request, st *store.Store, o *store.Object, start, end int64, status int) *s3Error {
	ctx := req.r.Context()
	select {
	case s.streams <- struct{}{}:
	case <-ctx.Done():
		req.abort = true
		return nil
	}
	defer func() { <-s.streams }()
	w := req.w
	rc := http.NewResponseController(w)
	if o.Size == 0 && len(o.Chunks) == 0 {
		w.WriteHeader(status)
		return nil
	}
	full := start == 0 && end == o.Size-1
	cr := s.chunks(st)
	defer cr.Close()
	wrote := false
	fail := func(err error) *s3Error {
		s.log.Error("object read from the store failed", "bucket", req.bucket, "key", quote(req.object), "error", err)
		if !wrote {
			return errInternal()
		}
		req.abort = true
		return nil
	}
	var off int64
	for i, id := range o.Chunks {
		if ctx.Err() != nil {
			req.abort = true
			return nil
		}
		if !full && off > end {
			break
		}
		if !full {
			if n, ok := s.sizes.get(id); ok && off+n <= start {
				off += n
				continue
			}
		}
		data, err := cr.Read(id)
		if err != nil {
			return fail(fmt.Errorf("object %q: %w", o.Key, err))
		}
		n := int64(len(data))
		s.sizes.put(id, n)
		if off+n > o.Size || full && i == len(o.Chunks)-1 && off+n != o.Size {
			return fail(fmt.Errorf("object %q: its chunks do not add up to its recorded size %d: %w", o.Key, o.Size, store.ErrCorrupt))
		}
		if off+n > start && off <= end {
			lo, hi := max(start-off, 0), min(end-off+1, n)
			if !wrote {
				w.WriteHeader(status)
				wrote = true
			}
			rc.SetWriteDeadline(time.Now().Add(chunkWriteTimeout))
			_, err := w.Write(data[lo:hi])
			if err == nil {
				err = rc.Flush() // each chunk goes out as it is checked
			}
			if err != nil {
				s.log.Debug("client went away", "bucket", req.bucket, "key", quote(req.object), "error", err)
				req.abort = true
				return nil
			}
		}
		off += n
	}
	if off <= end {
		return fail(fmt.Errorf("object %q: its chunks hold %d bytes, fewer than its recorded size %d: %w", o.Key, off, o.Size, store.ErrCorrupt))
	}
	return nil
}
