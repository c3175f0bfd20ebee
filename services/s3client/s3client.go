// Package s3client builds the minio-go client Holdfast uses for every S3
// endpoint it talks to: the sources it pulls from and the targets it
// restores to. One place decides the transport rules: no proxy from the
// environment (the appliance talks to its endpoints directly), the
// configured CA bundle instead of the system roots, and an explicit region
// so read-only credentials need not allow GetBucketLocation.
//
// Options can also guard every response: a body that stalls is cut
// (slow-loris servers), and documents minio-go parses whole (listing pages,
// bucket configuration) are bounded in size and checked for their shape
// (guard.go).
//
// Limits: static access keys only (no STS, no instance roles).
package s3client

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/holdfast-appliance/holdfast/services/config"
)

// DefaultRegion is used when the config names none.
const DefaultRegion = "us-east-1"

// Options tune the client beyond what the config says.
type Options struct {
	// Tune, if set, may adjust the transport (timeouts, idle connections).
	Tune func(*http.Transport)
	// MaxRetries is minio-go's retry count; 0 keeps its default.
	MaxRetries int
	// StallWindow and StallMinBytes cut a response body that delivers
	// fewer than StallMinBytes in StallWindow of waiting for it (time spent
	// by the caller between reads does not count): the Read returns a
	// *StallError and the connection is dropped. With StallMinBytes 0 it
	// is an idle timeout. A zero StallWindow turns the rule off.
	StallWindow   time.Duration
	StallMinBytes int64
	// MaxXMLBytes bounds every response body that is not an object's
	// content (listing pages, bucket configuration, error documents), which
	// minio-go parses whole: past it the Read returns a *TooLargeError.
	// Such bodies are also checked as they stream for the shape of an S3
	// document (MaxXMLDepth, MaxXMLEntries, the root element a listing or
	// versioning request asks for): a *BadXMLError. Zero turns both off.
	MaxXMLBytes int64
}

// New returns a client for c and the transport it uses (under the body
// guard, when Options ask for one). No request is made.
func New(c config.S3, o Options) (*minio.Client, *http.Transport, error) {
	tr, err := minio.DefaultTransport(c.TLS)
	if err != nil {
		return nil, nil, fmt.Errorf("s3 %s: transport: %w", c.Endpoint, err)
	}
	tr.Proxy = nil
	if len(c.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.CAPEM) {
			return nil, nil, fmt.Errorf("s3 %s: ca_bundle %s holds no certificate", c.Endpoint, c.CABundle)
		}
		if tr.TLSClientConfig == nil {
			return nil, nil, fmt.Errorf("s3 %s: transport has no TLS config", c.Endpoint)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if o.Tune != nil {
		o.Tune(tr)
	}
	region := c.Region
	if region == "" {
		region = DefaultRegion
	}
	var rt http.RoundTripper = tr
	if o.StallWindow > 0 || o.MaxXMLBytes > 0 {
		rt = &guard{next: tr, window: o.StallWindow, minBytes: o.StallMinBytes, maxXML: o.MaxXMLBytes}
	}
	cl, err := minio.New(c.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(c.AccessKey, c.SecretKey.Reveal(), ""),
		Secure:     c.TLS,
		Transport:  rt,
		Region:     region,
		MaxRetries: o.MaxRetries,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("s3 %s: %w", c.Endpoint, err)
	}
	return cl, tr, nil
}
