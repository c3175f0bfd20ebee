package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
}

// newS3Bucket builds the client for src. No request is made yet.
func newS3Bucket(src config.Source) (*s3Bucket, error) {
	c := src.S3
	cl, tr, err := s3client.New(c, s3client.Options{
		Tune: func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 2 * src.Parallel
			tr.ResponseHeaderTimeout = 2 * time.Minute
			tr.DisableCompression = true
		},
		MaxRetries: src.Retries + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", src.Name, err)
	}
	return &s3Bucket{core: minio.Core{Client: cl}, tr: tr, name: c.Bucket, prefix: c.Prefix, endpoint: c.Endpoint}, nil
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
	for o := range b.core.Client.ListObjects(ctx, b.name, opts) {
		if o.Err != nil {
			return b.describe("list", o.Err)
		}
		e := entry{
			Key: []byte(o.Key), VersionID: o.VersionID, Size: o.Size, ETag: o.ETag, ModTime: o.LastModified,
			IsLatest: o.IsLatest || !versions, DeleteMarker: o.IsDeleteMarker,
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (b *s3Bucket) Get(ctx context.Context, e entry, off int64) (io.ReadCloser, bodyInfo, error) {
	opts := minio.GetObjectOptions{VersionID: e.VersionID}
	if off == 0 {
		opts.Checksum = true
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
		return fmt.Errorf("%s: %s (%s)%s: %w", where, er.Message, er.Code, hint, err)
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
