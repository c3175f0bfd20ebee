package export

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// Defaults applied to zero Options fields.
const (
	DefaultRefreshInterval = 2 * time.Second
	DefaultCachedSnapshots = 4
	DefaultMaxStreams      = 8
	// maxKeysLimit is the most keys one listing page returns (S3's limit).
	maxKeysLimit = 1000
	// chunkSizeCache bounds the remembered chunk sizes (about 3 MiB).
	chunkSizeCache = 1 << 16
	// shutdownGrace is how long Serve lets running requests finish.
	shutdownGrace = 5 * time.Second
	// chunkWriteTimeout bounds the sending of one chunk to a client, so a
	// client that stops reading frees its stream slot.
	chunkWriteTimeout = 2 * time.Minute
)

// Credential is an access key the export accepts, with its secret.
type Credential struct {
	AccessKey string
	SecretKey config.Secret
}

// Options configure a Server.
type Options struct {
	// StoreDir is the store to export; it is only ever opened read-only.
	StoreDir string
	// Key opens the store: its read-only StoreKeys (what the appliance
	// gives the export; never the master key), or a master key source,
	// which is asked once, at New.
	Key store.KeySource
	// Credentials are the access keys requests may be signed with (at
	// least one).
	Credentials []Credential
	// CertPEM and KeyPEM are the TLS certificate (chain) and key; with
	// neither, New generates a self-signed certificate and logs its
	// fingerprint.
	CertPEM, KeyPEM []byte
	// Hosts are extra names and addresses a generated certificate is made
	// for (the listen address, say); localhost and the machine's own
	// addresses are always included.
	Hosts []string
	// Sources limits the export to these sources; nil exports every one.
	Sources []string
	// Logger gets every log line; nil means none.
	Logger hclog.Logger
	// Now is the clock signatures are checked against; nil means time.Now.
	Now func() time.Time
	// RefreshInterval is how often, at most, the store is checked for new
	// snapshots (DefaultRefreshInterval when zero).
	RefreshInterval time.Duration
	// CachedSnapshots is how many snapshots' object lists are kept in
	// memory (DefaultCachedSnapshots when zero).
	CachedSnapshots int
	// MaxStreams bounds the object bodies read from the store at once
	// (DefaultMaxStreams when zero); more GETs wait their turn.
	MaxStreams int
}

// Server is a read-only S3 endpoint over one store. Its methods are safe
// for concurrent use.
type Server struct {
	log     hclog.Logger
	now     func() time.Time
	cat     *catalog
	views   *viewCache
	sizes   *chunkSizes
	auth    *verifier
	tls     *tls.Config
	certPEM []byte
	fp      string
	streams chan struct{}
	chunks  func(*store.Store) chunkSource
}

// New checks the options, opens the store read-only once (a wrong key or a
// missing store fails here) and prepares TLS.
func New(ctx context.Context, o Options) (*Server, error) {
	log := o.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("export")
	if o.StoreDir == "" || o.Key == nil {
		return nil, errors.New("export: store directory and key are required")
	}
	if len(o.Credentials) == 0 {
		return nil, errors.New("export: at least one access key is required; anonymous access is never allowed")
	}
	secrets := map[string]string{}
	for _, c := range o.Credentials {
		if err := CheckCredential(c.AccessKey, c.SecretKey.Reveal()); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		if _, dup := secrets[c.AccessKey]; dup {
			return nil, fmt.Errorf("export: access key %q given twice", c.AccessKey)
		}
		secrets[c.AccessKey] = c.SecretKey.Reveal()
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.CachedSnapshots <= 0 {
		o.CachedSnapshots = DefaultCachedSnapshots
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	key := o.Key
	switch key.(type) {
	case store.StoreKeys, *store.StoreKeys:
	default:
		master, err := o.Key.MasterKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("export: master key: %w", err)
		}
		key = store.StaticKey(master)
	}
	s := &Server{
		log:     log,
		now:     now,
		cat:     newCatalog(o.StoreDir, key, o.Sources, o.RefreshInterval, now, log),
		views:   newViewCache(o.CachedSnapshots),
		sizes:   &chunkSizes{max: chunkSizeCache},
		auth:    &verifier{secrets: secrets, now: now},
		streams: make(chan struct{}, o.MaxStreams),
		chunks:  storeChunks,
	}
	g, err := s.cat.current(ctx)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	for _, name := range o.Sources {
		if _, ok := g.buckets[name]; !ok {
			log.Warn("exported source has no snapshot yet; its bucket appears with its first one", "source", name)
		}
	}

	var cert tls.Certificate
	switch {
	case len(o.CertPEM) > 0 && len(o.KeyPEM) > 0:
		if cert, err = loadCertificate(o.CertPEM, o.KeyPEM); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		s.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
		s.fp = Fingerprint(cert.Certificate[0])
		log.Info("TLS certificate loaded", "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter, "sha256_fingerprint", s.fp)
	case len(o.CertPEM) > 0 || len(o.KeyPEM) > 0:
		return nil, errors.New("export: give both a TLS certificate and its key, or neither (a self-signed certificate is generated)")
	default:
		if cert, s.certPEM, err = selfSigned(o.Hosts, now()); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		s.fp = Fingerprint(cert.Certificate[0])
		log.Warn("no TLS certificate configured; generated a self-signed one: check its fingerprint before trusting it",
			"sha256_fingerprint", s.fp, "names", strings.Join(cert.Leaf.DNSNames, ","), "not_after", cert.Leaf.NotAfter)
	}
	s.tls = tlsConfig(cert)
	log.Info("export ready", "store", o.StoreDir, "buckets", strings.Join(g.order, ","), "access_keys", len(secrets))
	return s, nil
}

// FromConfig builds a Server for the export block of a configuration.
func FromConfig(ctx context.Context, storeDir string, key store.KeySource, e config.Export, log hclog.Logger) (*Server, error) {
	var hosts []string
	if h, _, err := net.SplitHostPort(e.Listen); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return New(ctx, Options{
		StoreDir:    storeDir,
		Key:         key,
		Credentials: []Credential{{AccessKey: e.AccessKey, SecretKey: e.SecretKey}},
		CertPEM:     e.CertPEM,
		KeyPEM:      []byte(e.KeyPEM.Reveal()),
		Hosts:       hosts,
		Sources:     e.Sources,
		Logger:      log,
	})
}

// CheckCredential checks an access key and secret the way the config
// does: an access key of 1 to 128 printable ASCII characters without
// spaces or '/', a secret of at least config.MinExportSecretLength
// characters.
func CheckCredential(accessKey, secret string) error {
	if len(secret) < config.MinExportSecretLength {
		return fmt.Errorf("secret key of access key %q is %d characters; want at least %d", accessKey, len(secret), config.MinExportSecretLength)
	}
	return config.CheckExportCredential(accessKey, secret)
}

// Fingerprint returns the SHA-256 fingerprint of the certificate served.
func (s *Server) Fingerprint() string { return s.fp }

// CertificatePEM returns the certificate served (the leaf), PEM encoded:
// what a client puts in its CA bundle when the certificate is self-signed.
func (s *Server) CertificatePEM() []byte { return append([]byte(nil), s.certPEM...) }

// Serve serves HTTPS on ln until ctx is done. Then it closes ln, ends
// running transfers (their requests' contexts derive from ctx), waits a
// few seconds at most for handlers to return and closes every connection.
// It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.log.Info("serving", "address", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(tls.NewListener(ln, s.tls)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("export: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-errc
	s.log.Info("stopped", "address", ln.Addr().String())
	return nil
}

// statusWriter records what a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// request is one request being served.
type request struct {
	w      *statusWriter
	r      *http.Request
	id     string
	q      rawQuery
	key    string // access key, once verified
	op     string // S3 operation, for the log
	bucket string
	object string
	abort  bool // the body was cut short: drop the connection
}

// ServeHTTP serves one request. Every request is authenticated first;
// only GET and HEAD of the operations the export offers go further.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var rid [8]byte
	rand.Read(rid[:])
	req := &request{w: &statusWriter{ResponseWriter: w}, r: r, id: strings.ToUpper(hex.EncodeToString(rid[:])), op: "unknown"}
	w.Header().Set("X-Amz-Request-Id", req.id)
	w.Header().Set("Server", "Holdfast-Export")
	serr := s.serve(req)
	if serr != nil {
		s.writeError(req, serr)
	}
	args := []any{"op", req.op, "method", r.Method, "path", quote(r.URL.Path), "status", req.w.status,
		"bytes", req.w.bytes, "access_key", req.key, "remote", r.RemoteAddr, "request_id", req.id, "duration", time.Since(start)}
	switch {
	case serr != nil && (serr.status == http.StatusForbidden || serr.status == http.StatusMethodNotAllowed || serr.status == http.StatusBadRequest):
		s.log.Warn("request refused", append(args, "code", serr.code, "reason", serr.message)...)
	case serr != nil && serr.status >= 500:
		s.log.Error("request failed", append(args, "code", serr.code)...)
	case req.abort:
		s.log.Error("response cut short: the object could not be read whole", args...)
	default:
		s.log.Debug("request", args...)
	}
	if req.abort {
		panic(http.ErrAbortHandler) // drop the connection: the client sees a short body, never a wrong one
	}
}

// quote renders a client-supplied string for logs (Go-quoted, bounded).
func quote(s string) string {
	const max = 512
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// readMethods are the only methods that can reach an operation; writeMethods
// are refused as writes, and anything else as a method not allowed.
var writeMethods = map[string]bool{http.MethodPut: true, http.MethodPost: true, http.MethodDelete: true, http.MethodPatch: true}

func (s *Server) serve(req *request) *s3Error {
	r := req.r
	q, err := parseRawQuery(r.URL.RawQuery)
	if err != nil {
		return errInvalidArgument(fmt.Sprintf("query string: %v", err))
	}
	req.q = q
	path := strings.TrimPrefix(r.URL.Path, "/")
	req.bucket, req.object, _ = strings.Cut(path, "/")
	req.op = describe(r, q, req.bucket, req.object)

	a, serr := s.auth.verify(r)
	if serr != nil {
		return serr
	}
	req.key = a.accessKey
	switch {
	case writeMethods[r.Method]:
		return errReadOnly(req.op)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		return errMethodNotAllowed(r.Method)
	}
	if a.payloadHash != unsignedPayload && a.payloadHash != emptySHA256 {
		return errPayload(fmt.Sprintf("%s requests carry no body; X-Amz-Content-Sha256 must be %s or the hash of nothing", r.Method, unsignedPayload))
	}
	if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		return errPayload(r.Method + " requests carry no body")
	}
	g, err := s.cat.current(r.Context())
	if err != nil {
		s.log.Error("store unavailable", "error", err)
		return errInternal()
	}
	switch {
	case req.bucket == "" && req.object != "":
		return errNoSuchBucket() // "//key"
	case req.bucket == "":
		return s.listBuckets(req, g)
	case req.object == "":
		return s.bucketOp(req, g)
	default:
		return s.objectOp(req, g)
	}
}

// describe names the S3 operation a request asks for, for logs and
// refusals.
func describe(r *http.Request, q rawQuery, bucket, object string) string {
	has := func(n string) bool { _, ok := q.get(n); return ok }
	sub := ""
	for _, n := range []string{"acl", "tagging", "policy", "lifecycle", "cors", "versioning", "website", "replication",
		"encryption", "object-lock", "retention", "legal-hold", "notification", "logging", "location", "uploads",
		"versions", "delete", "restore", "select", "attributes", "ownershipControls", "publicAccessBlock", "accelerate",
		"requestPayment", "intelligent-tiering", "inventory", "metrics", "analytics", "policyStatus", "torrent"} {
		if has(n) {
			sub = n
			break
		}
	}
	title := func(s string) string {
		parts := strings.Split(s, "-")
		for i, p := range parts {
			if p != "" {
				parts[i] = strings.ToUpper(p[:1]) + p[1:]
			}
		}
		return strings.Join(parts, "")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		verb := "Get"
		if r.Method == http.MethodHead {
			verb = "Head"
		}
		switch {
		case bucket == "":
			return "ListBuckets"
		case object == "" && sub == "":
			if v, _ := q.get("list-type"); v == "2" {
				return "ListObjectsV2"
			}
			if r.Method == http.MethodHead {
				return "HeadBucket"
			}
			return "ListObjects"
		case object == "" && sub == "location":
			return "GetBucketLocation"
		case object == "" && sub == "versions":
			return "ListObjectVersions"
		case object == "" && sub == "uploads":
			return "ListMultipartUploads"
		case object == "":
			return verb + "Bucket" + title(sub)
		case sub == "":
			return verb + "Object"
		default:
			return verb + "Object" + title(sub)
		}
	case http.MethodPut:
		switch {
		case object == "" && sub == "":
			return "CreateBucket"
		case object == "":
			return "PutBucket" + title(sub)
		case has("uploadId") && has("partNumber") && r.Header.Get("X-Amz-Copy-Source") != "":
			return "UploadPartCopy"
		case has("uploadId") && has("partNumber"):
			return "UploadPart"
		case sub != "":
			return "PutObject" + title(sub)
		case r.Header.Get("X-Amz-Copy-Source") != "":
			return "CopyObject"
		default:
			return "PutObject"
		}
	case http.MethodPost:
		switch {
		case object == "" && sub == "delete":
			return "DeleteObjects"
		case sub == "uploads":
			return "CreateMultipartUpload"
		case has("uploadId"):
			return "CompleteMultipartUpload"
		case sub == "restore":
			return "RestoreObject"
		case sub == "select":
			return "SelectObjectContent"
		case object == "":
			return "PostObject"
		default:
			return "Post" + title(sub)
		}
	case http.MethodDelete:
		switch {
		case object == "" && sub == "":
			return "DeleteBucket"
		case object == "":
			return "DeleteBucket" + title(sub)
		case has("uploadId"):
			return "AbortMultipartUpload"
		case sub != "":
			return "DeleteObject" + title(sub)
		default:
			return "DeleteObject"
		}
	}
	return r.Method
}

// allowed reports the first query parameter of q outside allow (presigned
// URL parameters and x-id, which SDKs add, are always allowed).
func unexpectedParam(q rawQuery, allow ...string) (string, bool) {
next:
	for _, p := range q {
		if strings.HasPrefix(p.name, "X-Amz-") || p.name == "x-id" {
			continue
		}
		for _, a := range allow {
			if p.name == a {
				continue next
			}
		}
		return p.name, true
	}
	return "", false
}

func (s *Server) writeError(req *request, e *s3Error) {
	h := req.w.Header()
	if e.contentRange != "" {
		h.Set("Content-Range", e.contentRange)
	}
	if e.status == http.StatusNotModified {
		req.w.WriteHeader(e.status)
		return
	}
	// Error bodies never carry object headers set before the error.
	for k := range h {
		if strings.HasPrefix(k, "X-Amz-Meta-") || k == "Etag" || k == "Last-Modified" || k == "Accept-Ranges" || strings.HasPrefix(k, "X-Amz-Checksum-") {
			h.Del(k)
		}
	}
	if req.r.Method == http.MethodHead {
		req.w.WriteHeader(e.status)
		return
	}
	body, err := xml.Marshal(errorXML{Code: e.code, Message: e.message, Resource: req.r.URL.Path, RequestID: req.id})
	if err != nil {
		req.w.WriteHeader(e.status)
		return
	}
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)))
	req.w.WriteHeader(e.status)
	req.w.Write([]byte(xml.Header))
	req.w.Write(body)
}

// writeXML sends v as a 200 XML response.
func writeXML(req *request, v any) *s3Error {
	body, err := xml.Marshal(v)
	if err != nil {
		return errInternal()
	}
	h := req.w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(xml.Header)+len(body)))
	req.w.WriteHeader(http.StatusOK)
	if req.r.Method != http.MethodHead {
		req.w.Write([]byte(xml.Header))
		req.w.Write(body)
	}
	return nil
}

func (s *Server) listBuckets(req *request, g *generation) *s3Error {
	if req.r.Method != http.MethodGet {
		return errMethodNotAllowed(req.r.Method)
	}
	if p, bad := unexpectedParam(req.q); bad {
		return errNotImplemented(fmt.Sprintf("ListBuckets with %q", p))
	}
	out := listBucketsXML{NS: s3NS, Owner: exportOwner}
	for _, name := range g.order {
		out.Buckets = append(out.Buckets, bucketXML{Name: name, CreationDate: s3Time(g.buckets[name].created)})
	}
	return writeXML(req, out)
}

// listing params each listing version accepts.
var (
	listV1Params = []string{"prefix", "delimiter", "marker", "max-keys", "encoding-type"}
	listV2Params = []string{"list-type", "prefix", "delimiter", "continuation-token", "start-after", "max-keys",
		"encoding-type", "fetch-owner", "metadata", "allow-unordered"}
)

func (s *Server) bucketOp(req *request, g *generation) *s3Error {
	b, ok := g.buckets[req.bucket]
	if !ok {
		return errNoSuchBucket()
	}
	has := func(n string) bool { _, ok := req.q.get(n); return ok }
	switch {
	case has("location"):
		if p, bad := unexpectedParam(req.q, "location"); bad {
			return errNotImplemented(fmt.Sprintf("GetBucketLocation with %q", p))
		}
		// The empty location is us-east-1, which clients then sign for.
		return writeXML(req, locationXML{NS: s3NS})
	case has("versioning"):
		if p, bad := unexpectedParam(req.q, "versioning"); bad {
			return errNotImplemented(fmt.Sprintf("GetBucketVersioning with %q", p))
		}
		return writeXML(req, versioningXML{NS: s3NS})
	}
	if v, _ := req.q.get("list-type"); v == "2" {
		if p, bad := unexpectedParam(req.q, listV2Params...); bad {
			return errNotImplemented(fmt.Sprintf("%s with %q", req.op, p))
		}
		if req.r.Method == http.MethodHead {
			req.w.WriteHeader(http.StatusOK) // HeadBucket
			return nil
		}
		return s.listV2(req, g, b)
	}
	if p, bad := unexpectedParam(req.q, listV1Params...); bad {
		return errNotImplemented(req.op + fmt.Sprintf(" (query parameter %q)", p))
	}
	if req.r.Method == http.MethodHead {
		req.w.WriteHeader(http.StatusOK) // HeadBucket
		return nil
	}
	return s.listV1(req, g, b)
}

// viewSrc adapts the server's cache to listings for one generation.
type viewSrc struct {
	s *Server
	g *generation
}

func (v viewSrc) view(ctx context.Context, id string) (contents, error) {
	return v.s.views.get(ctx, v.g.st, id)
}

func (v viewSrc) cachedView(id string) (contents, bool) { return v.s.views.peek(id) }

// commonListParams parses what V1 and V2 share.
func commonListParams(q rawQuery) (p listParams, encode bool, serr *s3Error) {
	p.prefix, _ = q.get("prefix")
	p.delimiter, _ = q.get("delimiter")
	p.maxKeys = maxKeysLimit
	if v, ok := q.get("max-keys"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, false, errInvalidArgument(fmt.Sprintf("max-keys %q: want a number from 0", v))
		}
		p.maxKeys = min(n, maxKeysLimit)
	}
	switch v, ok := q.get("encoding-type"); {
	case !ok:
	case strings.EqualFold(v, "url"):
		encode = true
	default:
		return p, false, errInvalidArgument(fmt.Sprintf("encoding-type %q: only url is supported", v))
	}
	return p, encode, nil
}

func (s *Server) runList(req *request, g *generation, b *bucket, pin string, p listParams) (listResult, *s3Error) {
	started := make(map[string]time.Time, len(b.snaps))
	for _, si := range b.snaps {
		started[si.ID] = si.Started
	}
	res, err := list(req.r.Context(), viewSrc{s, g}, b.segments(pin), started, p)
	if err != nil {
		if req.r.Context().Err() == nil {
			s.log.Error("listing failed", "bucket", b.name, "error", err)
		}
		return res, errInternal()
	}
	return res, nil
}

// contents renders the items of a listing; keys XML cannot carry are left
// out unless the listing is URL-encoded.
func (s *Server) contents(req *request, res listResult, encode, owner bool) ([]contentXML, []prefixXML) {
	var cs []contentXML
	var ps []prefixXML
	skipped := 0
	for _, it := range res.items {
		name := it.key
		if encode {
			name = awsEscape(name, false)
		} else if !xmlSafe(name) {
			skipped++
			continue
		}
		if it.isDir {
			ps = append(ps, prefixXML{Prefix: name})
			continue
		}
		mod := it.obj.ModTime
		if mod.IsZero() {
			mod = it.snapped
		}
		c := contentXML{Key: name, LastModified: s3Time(mod), ETag: `"` + etagOf(it.obj) + `"`, Size: it.obj.Size, StorageClass: "STANDARD"}
		if owner {
			o := exportOwner
			c.Owner = &o
		}
		cs = append(cs, c)
	}
	if skipped > 0 {
		s.log.Warn("keys left out of a listing: XML cannot carry them; list with encoding-type=url", "bucket", req.bucket, "count", skipped)
	}
	return cs, ps
}

func encodeIf(encode bool, v string) string {
	if encode {
		return awsEscape(v, false)
	}
	return v
}

func (s *Server) listV2(req *request, g *generation, b *bucket) *s3Error {
	p, encode, serr := commonListParams(req.q)
	if serr != nil {
		return serr
	}
	startAfter, _ := req.q.get("start-after")
	tok, hasTok := req.q.get("continuation-token")
	pin := ""
	p.marker = startAfter
	if hasTok {
		var err error
		var marker string
		if pin, marker, err = decodeToken(tok); err != nil {
			return errInvalidArgument(err.Error())
		}
		p.marker = max(marker, startAfter)
	}
	if pin == "" {
		pin = b.latest
	}
	res, serr := s.runList(req, g, b, pin, p)
	if serr != nil {
		return serr
	}
	fetchOwner, _ := req.q.get("fetch-owner")
	cs, ps := s.contents(req, res, encode, fetchOwner == "true")
	out := listV2XML{
		NS: s3NS, Name: b.name, Prefix: encodeIf(encode, p.prefix), StartAfter: encodeIf(encode, startAfter),
		ContinuationToken: tok, KeyCount: len(cs) + len(ps), MaxKeys: p.maxKeys,
		Delimiter: encodeIf(encode, p.delimiter), IsTruncated: res.truncated, Contents: cs, CommonPrefixes: ps,
	}
	if encode {
		out.EncodingType = "url"
	}
	if res.truncated {
		out.NextContinuationToken = encodeToken(pin, res.next)
	}
	return writeXML(req, out)
}

func (s *Server) listV1(req *request, g *generation, b *bucket) *s3Error {
	p, encode, serr := commonListParams(req.q)
	if serr != nil {
		return serr
	}
	p.marker, _ = req.q.get("marker")
	res, serr := s.runList(req, g, b, "", p)
	if serr != nil {
		return serr
	}
	// A V1 client sends the last key back as the next marker, and clients
	// (minio-go among them) turn invalid UTF-8 in a query into U+FFFD, a
	// different marker that lists the key again. So a page does not end
	// on such a key when an earlier one can end it.
	if n := len(res.items); res.truncated && n > 1 && !utf8.ValidString(res.items[n-1].key) {
		for n > 1 && !utf8.ValidString(res.items[n-1].key) {
			n--
		}
		res.items, res.next = res.items[:n], res.items[n-1].key
	}
	cs, ps := s.contents(req, res, encode, true)
	out := listV1XML{
		NS: s3NS, Name: b.name, Prefix: encodeIf(encode, p.prefix), Marker: encodeIf(encode, p.marker),
		MaxKeys: p.maxKeys, Delimiter: encodeIf(encode, p.delimiter), IsTruncated: res.truncated,
		Contents: cs, CommonPrefixes: ps,
	}
	if encode {
		out.EncodingType = "url"
	}
	if res.truncated {
		// Always sent, not only with a delimiter: a client that took its
		// last key as the next marker would list a common prefix twice.
		out.NextMarker = encodeIf(encode, res.next)
	}
	return writeXML(req, out)
}
