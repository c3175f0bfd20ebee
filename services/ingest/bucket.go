package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/s3client"
)

// NetLimits bound how long a pull waits for its source and how much it
// takes from it in one response. Zero fields take the Default* values.
type NetLimits struct {
	// ResponseHeaderTimeout bounds the wait for a response's headers
	// (after the request is sent); a server that trickles headers is cut
	// here.
	ResponseHeaderTimeout time.Duration
	// MaxResponseHeaderBytes bounds a response's headers.
	MaxResponseHeaderBytes int64
	// StallWindow and StallMinBytes cut a body (object content or listing
	// page) that delivers fewer than StallMinBytes in StallWindow of
	// waiting for it: a slow-loris or dead server. A cut object body is
	// resumed with a Range GET (retries), like one cut by the network.
	StallWindow   time.Duration
	StallMinBytes int64
	// MaxXMLBytes bounds each listing page, configuration and error
	// document, which minio-go decodes whole into memory. Such documents
	// are also refused when nested deeper than any S3 answer, holding more
	// entries than a page may, or rooted elsewhere than the request asks
	// (s3client.BadXMLError).
	MaxXMLBytes int64
	// ListIdleTimeout ends a listing during which no entry arrived for
	// this long (a server answering "truncated" with empty pages forever).
	ListIdleTimeout time.Duration
}

// Defaults of NetLimits. A page of 1,000 entries with 1,024-byte keys is
// about 1.5 MiB of XML, 7 MiB if every key byte needs escaping; the stall
// rule asks for an average of about 1 KiB/s, far below any working link.
const (
	DefaultResponseHeaderTimeout  = 2 * time.Minute
	DefaultMaxResponseHeaderBytes = 1 << 20
	DefaultStallWindow            = time.Minute
	DefaultStallMinBytes          = 64 << 10
	DefaultMaxXMLBytes            = 8 << 20
	DefaultListIdleTimeout        = 5 * time.Minute
)

func (n NetLimits) withDefaults() NetLimits {
	if n.ResponseHeaderTimeout <= 0 {
		n.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if n.MaxResponseHeaderBytes <= 0 {
		n.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	if n.StallWindow <= 0 {
		n.StallWindow = DefaultStallWindow
	}
	if n.StallMinBytes <= 0 {
		n.StallMinBytes = DefaultStallMinBytes
	}
	if n.MaxXMLBytes <= 0 {
		n.MaxXMLBytes = DefaultMaxXMLBytes
	}
	if n.ListIdleTimeout <= 0 {
		n.ListIdleTimeout = DefaultListIdleTimeout
	}
	return n
}

// entry is one listed object version.
type entry struct {
	Key          []byte
	VersionID    string
	Size         int64
	ETag         string
	ModTime      time.Time
	IsLatest     bool
	DeleteMarker bool
}

// bodyInfo is what a GET response declares about a body.
type bodyInfo struct {
	Length       int64 // Content-Length of this response
	ETag         string
	ContentType  string
	UserMeta     map[string]string
	Checksums    map[string]string // x-amz-checksum-<alg> -> value as sent (base64)
	ChecksumType string            // FULL_OBJECT or COMPOSITE, when sent
}

// bucket is the read-only view of a source a pull needs. The S3
// implementation uses minio-go; tests also drive pulls through an in-memory
// one (keys S3 servers refuse, lying servers).
type bucket interface {
	// Versioned reports whether the bucket has (or had) versioning on. It
	// is the first request of a pull, so it also proves the endpoint and
	// the credentials.
	Versioned(ctx context.Context) (bool, error)
	// List calls fn for every object (every version and delete marker
	// when versions is set) under the prefix.
	List(ctx context.Context, versions bool, fn func(entry) error) error
	// Get opens e's body from byte offset off. A GET from offset 0 asks
	// for checksums; a GET from a later offset is a Range GET that must
	// match e's ETag.
	Get(ctx context.Context, e entry, off int64) (io.ReadCloser, bodyInfo, error)
}

// s3Bucket is a bucket on an S3-compatible server.
type s3Bucket struct {
	core     minio.Core
	tr       *http.Transport
	name     string
	prefix   string
	endpoint string
	listIdle time.Duration
}

// newS3Bucket builds the client for src under the bounds nl (defaults
// applied). No request is made yet.
func newS3Bucket(src config.Source, nl NetLimits) (*s3Bucket, error) {
	c := src.S3
	nl = nl.withDefaults()
	cl, tr, err := s3client.New(c, s3client.Options{
		Tune: func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 2 * src.Parallel
			tr.ResponseHeaderTimeout = nl.ResponseHeaderTimeout
			tr.MaxResponseHeaderBytes = nl.MaxResponseHeaderBytes
			tr.DisableCompression = true
		},
		MaxRetries:    src.Retries + 1,
		StallWindow:   nl.StallWindow,
		StallMinBytes: nl.StallMinBytes,
		MaxXMLBytes:   nl.MaxXMLBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src.Name, err)
	}
	return &s3Bucket{core: minio.Core{Client: cl}, tr: tr, name: c.Bucket, prefix: c.Prefix, endpoint: c.Endpoint, listIdle: nl.ListIdleTimeout}, nil
}

// close drops the idle connections to the source.
func (b *s3Bucket) close() { b.tr.CloseIdleConnections() }

func (b *s3Bucket) Versioned(ctx context.Context) (bool, error) {
	vc, err := b.core.GetBucketVersioning(ctx, b.name)
	if err != nil {
		return false, b.describe("check bucket versioning", err)
	}
	return vc.Status == "Enabled" || vc.Status == "Suspended", nil
}

func (b *s3Bucket) List(ctx context.Context, versions bool, fn func(entry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine when fn fails
	opts := minio.ListObjectsOptions{Prefix: b.prefix, Recursive: true, WithVersions: versions}
	ch := b.core.Client.ListObjects(ctx, b.name, opts)
	// A server can answer "truncated" with empty pages forever: no entry
	// arrives, so max_objects_per_pull never trips. The idle timer does.
	idle := time.NewTimer(b.listIdle)
	defer idle.Stop()
	for {
		var o minio.ObjectInfo
		var ok bool
		select {
		case o, ok = <-ch:
		case <-idle.C:
			return fmt.Errorf("list bucket %q at %s: no object listed for %s (a server answering with empty pages?)", b.name, b.endpoint, b.listIdle)
		}
		if !ok {
			return ctx.Err()
		}
		idle.Stop() // fn's time is not the server's
		if o.Err != nil {
			return b.describe("list", o.Err)
		}
		// The ETag is a slice of the quoted string minio-go decoded; a
		// copy of just the ETag is a third smaller, for every entry a
		// pull keeps until it is fetched.
		e := entry{
			Key: []byte(o.Key), VersionID: o.VersionID, Size: o.Size, ETag: strings.Clone(o.ETag), ModTime: o.LastModified,
			IsLatest: o.IsLatest || !versions, DeleteMarker: o.IsDeleteMarker,
		}
		if err := fn(e); err != nil {
			return err
		}
		idle.Reset(b.listIdle)
	}
}

func (b *s3Bucket) Get(ctx context.Context, e entry, off int64) (io.ReadCloser, bodyInfo, error) {
	opts := minio.GetObjectOptions{VersionID: e.VersionID}
	if off == 0 {
		// Ask for the checksums with the header alone: opts.Checksum would
		// also make minio-go hash the body to check one of them, which
		// body.verify does for every full-object checksum declared (a
		// second pass over every byte, a whole SHA-256 for some sources).
		opts.Set("x-amz-checksum-mode", "ENABLED")
	} else if err := opts.SetRange(off, 0); err != nil {
		return nil, bodyInfo{}, err
	}
	if e.ETag != "" {
		if err := opts.SetMatchETag(e.ETag); err != nil {
			return nil, bodyInfo{}, err
		}
	}
	rc, oi, hdr, err := b.core.GetObject(ctx, b.name, string(e.Key), opts)
	if err != nil {
		return nil, bodyInfo{}, b.describe("get", err)
	}
	bi := bodyInfo{Length: oi.Size, ETag: oi.ETag, ContentType: oi.ContentType, ChecksumType: hdr.Get("X-Amz-Checksum-Type")}
	if len(oi.UserMetadata) > 0 {
		bi.UserMeta = make(map[string]string, len(oi.UserMetadata))
		for k, v := range oi.UserMetadata {
			bi.UserMeta[strings.ToLower(k)] = v
		}
	}
	for k, vs := range hdr {
		alg, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-checksum-")
		if !ok || alg == "type" || alg == "mode" || alg == "algorithm" || len(vs) == 0 {
			continue
		}
		if bi.Checksums == nil {
			bi.Checksums = map[string]string{}
		}
		bi.Checksums[alg] = vs[0]
	}
	return rc, bi, nil
}

// describe turns a client error into one that says what to check.
func (b *s3Bucket) describe(op string, err error) error {
	where := fmt.Sprintf("%s bucket %q at %s", op, b.name, b.endpoint)
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.Code != "" {
		hint := ""
		switch er.Code {
		case "InvalidAccessKeyId":
			hint = ": the access key is not known to the server; check access_key"
		case "SignatureDoesNotMatch":
			hint = ": the secret key is wrong; check secret_key"
		case "AccessDenied":
			hint = ": the credentials lack a read or list right (see the read-only policy in the README)"
		case "NoSuchBucket":
			hint = ": no such bucket; check bucket"
		case "PreconditionFailed":
			hint = ": the object changed while it was read"
		}
		if er.StatusCode >= 300 && er.StatusCode < 400 {
			hint = ": the server answers with a redirect, which the pull never follows; check endpoint"
		}
		return fmt.Errorf("%s: %s (%s)%s: %w", where, er.Message, er.Code, hint, err)
	}
	var se *s3client.StallError
	var tl *s3client.TooLargeError
	var xe *xml.SyntaxError
	var ue0 xml.UnmarshalError
	var be *s3client.BadXMLError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%s: the server stopped sending: %w", where, err)
	case errors.As(err, &tl):
		return fmt.Errorf("%s: the server's answer is too large: %w", where, err)
	case errors.As(err, &be) || errors.As(err, &xe) || errors.As(err, &ue0) || strings.Contains(err.Error(), "exceeded max depth"):
		return fmt.Errorf("%s: the server's answer is not valid S3 XML: %w", where, err)
	case strings.Contains(err.Error(), "response headers exceeded"):
		return fmt.Errorf("%s: the server sent oversized response headers: %w", where, err)
	}
	var ue *url.Error
	if errors.As(err, &ue) || isNetErr(err) {
		hint := ""
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			hint = ": connection refused; is the endpoint's host and port right and the server up?"
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			hint = ": timed out reaching the endpoint"
		default:
			var ce *tls.CertificateVerificationError
			var ua x509.UnknownAuthorityError
			var hn x509.HostnameError
			if errors.As(err, &ce) || errors.As(err, &ua) || errors.As(err, &hn) {
				hint = ": the server's TLS certificate is not trusted; set ca_bundle or check the host name"
			}
		}
		return fmt.Errorf("%s: cannot reach the endpoint%s: %w", where, hint, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retryable reports whether a GET failure may go away on its own.
func retryable(err error) bool {
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.Code != "" {
		return er.StatusCode >= 500 || er.Code == "SlowDown" || er.Code == "RequestTimeout"
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}
