package s3client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// StallError means a response body delivered fewer than the minimum bytes
// in a window of waiting for it (a slow-loris or dead server). It is a
// timeout in the net.Error sense.
type StallError struct {
	Got    int64         // bytes received in the window
	Waited time.Duration // time spent waiting for them
	Window time.Duration // the window
	Min    int64         // bytes the window needed
}

func (e *StallError) Error() string {
	if e.Min <= 0 {
		return fmt.Sprintf("response body stalled: no byte in %s", e.Waited.Round(time.Millisecond))
	}
	return fmt.Sprintf("response body stalled: %d bytes in %s of waiting, below the minimum of %d bytes per %s", e.Got, e.Waited.Round(time.Millisecond), e.Min, e.Window)
}

// Timeout reports true: a stall is a timeout.
func (e *StallError) Timeout() bool { return true }

// Temporary reports true: a retry may find a faster server.
func (e *StallError) Temporary() bool { return true }

// TooLargeError means a response the client parses as a whole (an XML
// listing page, a bucket configuration, an error document) was larger than
// the bound.
type TooLargeError struct{ Max int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("response body exceeds %d bytes, the most an S3 listing or configuration document may take here", e.Max)
}

// BadXMLError means a response the client parses as an S3 document is not
// one: nested deeper than any S3 document, or with another root element
// than the request asks for. encoding/xml skips unknown elements, so such
// a document would otherwise decode as an empty listing.
type BadXMLError struct{ Reason string }

func (e *BadXMLError) Error() string { return "response is not the S3 document asked for: " + e.Reason }

// MaxXMLDepth is how deep elements of an S3 document may nest; the deepest
// S3 answers (ListVersionsResult > Version > Owner > ID) nest four.
// MaxXMLEntries is how many elements its root may hold: a listing page
// holds at most 1,000 entries and a dozen other fields. minio-go decodes a
// page whole, some 700 bytes per entry before the key, so this bounds a
// page's memory where MaxXMLBytes alone would let tiny entries by the
// hundred thousand through.
const (
	MaxXMLDepth   = 32
	MaxXMLEntries = 4000
)

// guard wraps a transport: every response body is cut when it stalls, and
// every body that is not an object's content is bounded in size and
// checked for the shape of an S3 document.
type guard struct {
	next     http.RoundTripper
	window   time.Duration
	minBytes int64
	maxXML   int64
}

// RoundTrip sends req under a context the body guard can cancel: that is
// what unblocks a body Read stuck on a silent connection.
func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	resp, err := g.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	gb := &guardedBody{rc: resp.Body, cancel: cancel, window: g.window, minBytes: g.minBytes, limit: -1}
	if g.maxXML > 0 && (resp.StatusCode >= 300 || !objectRead(req)) {
		gb.limit = g.maxXML
		gb.shape = &xmlShape{}
		if resp.StatusCode < 300 {
			gb.shape.root = rootFor(req)
		}
	}
	resp.Body = gb
	return resp, nil
}

// rootFor returns the root element a bucket-level GET must answer with, or
// "" when the guard does not know it.
func rootFor(req *http.Request) string {
	q := req.URL.Query()
	switch {
	case req.Method != http.MethodGet:
		return ""
	case q.Get("list-type") == "2":
		return "ListBucketResult"
	case q.Has("versions"):
		return "ListVersionsResult"
	case q.Has("versioning"):
		return "VersioningConfiguration"
	}
	return ""
}

// objectRead reports whether req reads an object's content (GET or HEAD on
// a key, with at most a version and part number): every bucket-level
// request minio-go sends (listings, versioning, location) carries a
// subresource query instead.
func objectRead(req *http.Request) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return false
	}
	for k := range req.URL.Query() {
		if k != "versionId" && k != "partNumber" && !strings.HasPrefix(k, "response-") {
			return false
		}
	}
	return true
}

// guardedBody enforces the stall rule and the size bound on one body. The
// stall clock only runs while a Read waits on the connection, so a slow
// consumer is never blamed on the server.
type guardedBody struct {
	rc       io.ReadCloser
	cancel   context.CancelFunc
	window   time.Duration
	minBytes int64
	limit    int64     // < 0: unbounded
	shape    *xmlShape // nil: not an XML document

	waited  time.Duration
	got     int64 // bytes in the current window
	read    int64 // bytes in all
	err     error
	stalled atomic.Bool
}

func (b *guardedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.limit >= 0 && int64(len(p)) > b.limit-b.read+1 {
		p = p[:b.limit-b.read+1] // one byte past the bound shows it is exceeded
	}
	var timer *time.Timer
	if b.window > 0 {
		timer = time.AfterFunc(b.window-b.waited, func() {
			b.stalled.Store(true)
			b.cancel()
		})
	}
	start := time.Now()
	n, err := b.rc.Read(p)
	b.read += int64(n)
	if b.limit >= 0 && b.read > b.limit {
		if timer != nil {
			timer.Stop()
		}
		b.fail(&TooLargeError{Max: b.limit})
		return 0, b.err
	}
	if b.shape != nil {
		if serr := b.shape.scan(p[:n]); serr != nil {
			if timer != nil {
				timer.Stop()
			}
			b.fail(serr)
			return 0, b.err
		}
	}
	if timer == nil {
		return n, err
	}
	timer.Stop()
	b.waited += time.Since(start)
	b.got += int64(n)
	switch {
	case b.stalled.Load():
		b.fail(&StallError{Got: b.got, Waited: b.waited, Window: b.window, Min: b.minBytes})
		return n, b.err
	case err != nil:
		return n, err
	case b.waited >= b.window && b.got < b.minBytes:
		b.fail(&StallError{Got: b.got, Waited: b.waited, Window: b.window, Min: b.minBytes})
		return n, b.err
	case b.waited >= b.window:
		b.waited, b.got = 0, 0
	}
	return n, nil
}

// fail ends the body with err and drops its connection.
func (b *guardedBody) fail(err error) {
	b.err = err
	b.cancel()
}

func (b *guardedBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}

// xmlShape follows the element nesting of a document as it streams by,
// byte by byte, without decoding it: enough to refuse a document nested
// deeper than MaxXMLDepth or rooted elsewhere than root. Comments and CDATA
// sections are skipped whole, processing instructions and DOCTYPE to their
// first '>' (S3 documents have neither; a DOCTYPE with an internal subset
// can only make the document look deeper, and encoding/xml refuses
// entities it declares).
type xmlShape struct {
	root    string // "": any
	depth   int
	entries int // elements directly under the root
	state   byte
	quote   byte
	bang    []byte  // what follows "<!", up to "[CDATA["
	last    [2]byte // the two bytes before this one, in comments and CDATA
	name    []byte  // the root element's name, while it is read
	named   bool    // the root element's name is known
}

const (
	xText   = iota
	xLT     // after '<'
	xName   // in the name of an opening tag
	xTag    // in an opening tag, after its name
	xQuote  // in a quoted attribute value
	xSlash  // after '/' in an opening tag
	xClose  // in a closing tag
	xSkip   // in <!...> or <?...>
	xBang   // after "<!"
	xComm   // in <!-- -->
	xCDATA  // in <![CDATA[ ]]>
	maxName = 256
)

func (x *xmlShape) scan(p []byte) error {
	for _, c := range p {
		switch x.state {
		case xText:
			if c == '<' {
				x.state = xLT
			}
		case xLT:
			switch c {
			case '/':
				x.state = xClose
			case '?':
				x.state = xSkip
			case '!':
				x.state, x.bang = xBang, x.bang[:0]
			default:
				x.depth++
				if x.depth > MaxXMLDepth {
					return &BadXMLError{Reason: fmt.Sprintf("elements nested deeper than %d levels", MaxXMLDepth)}
				}
				if x.depth == 2 {
					if x.entries++; x.entries > MaxXMLEntries {
						return &BadXMLError{Reason: fmt.Sprintf("more than %d entries in one document (a listing page holds at most 1,000)", MaxXMLEntries)}
					}
				}
				x.state = xName
				if !x.named {
					x.name = append(x.name[:0], c)
				}
			}
		case xName:
			switch {
			case c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\r' || c == '\n':
				if err := x.nameDone(); err != nil {
					return err
				}
				switch c {
				case '>':
					x.state = xText
				case '/':
					x.state = xSlash
				default:
					x.state = xTag
				}
			case !x.named && len(x.name) < maxName:
				x.name = append(x.name, c)
			}
		case xTag:
			switch c {
			case '"', '\'':
				x.state, x.quote = xQuote, c
			case '/':
				x.state = xSlash
			case '>':
				x.state = xText
			}
		case xQuote:
			if c == x.quote {
				x.state = xTag
			}
		case xSlash:
			if c == '>' {
				x.depth--
				x.state = xText
			} else {
				x.state = xTag
			}
		case xClose:
			if c == '>' {
				x.depth--
				x.state = xText
			}
		case xSkip:
			if c == '>' {
				x.state = xText
			}
		case xBang:
			x.bang = append(x.bang, c)
			switch b := string(x.bang); {
			case b == "--":
				x.state, x.last = xComm, [2]byte{}
			case b == "[CDATA[":
				x.state, x.last = xCDATA, [2]byte{}
			case c == '>':
				x.state = xText
			case !strings.HasPrefix("--", b) && !strings.HasPrefix("[CDATA[", b):
				x.state = xSkip
			}
		case xComm, xCDATA:
			end := byte('-')
			if x.state == xCDATA {
				end = ']'
			}
			if c == '>' && x.last == [2]byte{end, end} {
				x.state = xText
			}
			x.last = [2]byte{x.last[1], c}
		}
	}
	return nil
}

// nameDone checks the root element's name once it is read.
func (x *xmlShape) nameDone() error {
	if x.named {
		return nil
	}
	x.named = true
	name := string(x.name)
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	x.name = nil
	if x.root != "" && name != x.root {
		return &BadXMLError{Reason: fmt.Sprintf("its root element is %.64q, not %q", name, x.root)}
	}
	return nil
}
