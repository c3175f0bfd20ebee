package ingest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostileProxy is an HTTP server on 127.0.0.1 in front of a real MinIO
// that misbehaves in one way (mode) on the requests that mode concerns:
// the object GETs of one key (target) or the bucket listing. Everything
// else is passed through, so the pull gets as far as the fault.
//
// Modes on the GETs of target:
//
//	slow-body        headers as MinIO sent them, then the body 1 byte a second
//	slow-headers     the status line and headers 1 byte a second
//	reset-once       half the body, then a TCP reset (first GET only)
//	reset-always     the same on every GET of target
//	short-length     Content-Length 1000 bytes short of the body sent
//	long-no-length   no Content-Length; the body and 1000 bytes more, then close
//	extra-after      an honest Content-Length, then 1000 bytes of junk after it
//	wrong-etag       the response's ETag is another object's
//	etag-not-body    listing and GET both claim an ETag that is not the body's
//	                 MD5 (the proxy serves content itself)
//	huge-headers     10 MiB of response headers
//	redirect-loop    307 to the same URL, on the listing and on GETs
//
// Modes on the listing (synthesized, MinIO is not asked):
//
//	million-keys     1,000,000 empty objects, 1,000 per page with continuation
//	                 tokens; their GETs are answered too
//	nested-xml       a page of 100,000 nested elements
//	oversized-xml    a page that never ends: <Contents> entries streamed up
//	                 to 512 MiB
//	oversized-key    a page whose first key never ends (512 MiB)
//	garbage-xml      a page of binary junk
//	html-page        a well-formed XHTML page (a captive portal, say)
//	empty-pages      "truncated" pages without a key, forever
//
// And redirect-all answers every request, the first included, with a 307 to
// itself.
type hostileProxy struct {
	Endpoint string
	target   string // MinIO's host:port
	key      string // the object whose GETs misbehave
	mode     string
	content  []byte // the target's content, for modes that serve it themselves
	rp       *httputil.ReverseProxy
	up       *http.Client
	srv      *http.Server
	done     chan struct{}

	mu        sync.Mutex
	conns     []net.Conn // hijacked connections, closed at cleanup
	targetGET int        // GETs of key so far
	listPages int
	wg        sync.WaitGroup
}

// emptyETag is the MD5 of no bytes: the ETag of an empty object.
const emptyETag = "d41d8cd98f00b204e9800998ecf8427e"

func newHostileProxy(t testing.TB, target, key string, content []byte, mode string) *hostileProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse("http://" + target)
	if err != nil {
		t.Fatal(err)
	}
	p := &hostileProxy{Endpoint: ln.Addr().String(), target: target, key: key, content: content, mode: mode, done: make(chan struct{})}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.Transport = &http.Transport{Proxy: nil, DisableCompression: true}
	p.rp.ErrorLog = nil
	p.up = &http.Client{
		Transport:     &http.Transport{Proxy: nil, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	t.Cleanup(func() {
		close(p.done)
		p.srv.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// kind says what a request is: "list", "object" (a GET of p.key), "synth"
// (a GET of a synthesized key) or "other".
func (p *hostileProxy) kind(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case q.Has("list-type") || q.Has("versions"):
		return "list"
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+p.key):
		return "object"
	case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/synth/"):
		return "synth"
	}
	return "other"
}

func (p *hostileProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.wg.Add(1)
	defer p.wg.Done()
	kind := p.kind(r)
	if p.mode == "redirect-all" || p.mode == "redirect-loop" && (kind == "list" || kind == "object") {
		w.Header().Set("Location", "http://"+r.Host+r.URL.RequestURI())
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	switch {
	case kind == "object" && p.objectMode():
		p.mu.Lock()
		p.targetGET++
		n := p.targetGET
		p.mu.Unlock()
		p.serveObject(w, r, n)
	case kind == "list" && p.listMode():
		p.mu.Lock()
		p.listPages++
		p.mu.Unlock()
		p.serveList(w, r)
	case kind == "synth" && p.mode == "million-keys":
		w.Header().Set("ETag", `"`+emptyETag+`"`)
		w.Header().Set("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	case p.mode == "etag-not-body" && kind == "list":
		p.rewriteListing(w, r)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

func (p *hostileProxy) objectMode() bool {
	switch p.mode {
	case "slow-body", "slow-headers", "reset-once", "reset-always", "short-length", "long-no-length",
		"extra-after", "wrong-etag", "etag-not-body", "huge-headers":
		return true
	}
	return false
}

func (p *hostileProxy) listMode() bool {
	switch p.mode {
	case "million-keys", "nested-xml", "oversized-xml", "oversized-key", "garbage-xml", "html-page", "empty-pages":
		return true
	}
	return false
}

// upstream sends r to MinIO as it came (same Host, so the signature holds).
func (p *hostileProxy) upstream(r *http.Request) (*http.Response, error) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.target+r.RequestURI, nil)
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host
	return p.up.Do(out)
}

// hijack takes over the client connection, to write raw HTTP.
func (p *hostileProxy) hijack(w http.ResponseWriter) (net.Conn, *bufio.Writer) {
	c, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
	return c, brw.Writer
}

// head writes a status line and headers.
func head(bw *bufio.Writer, status int, h http.Header) {
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	h.Write(bw)
	bw.WriteString("\r\n")
}

// trickle writes b one byte a second until it is written, the client is
// gone or the proxy closes.
func (p *hostileProxy) trickle(c net.Conn, bw *bufio.Writer, b []byte) {
	for _, x := range b {
		if err := bw.WriteByte(x); err != nil {
			return
		}
		if err := bw.Flush(); err != nil {
			return
		}
		select {
		case <-p.done:
			return
		case <-time.After(time.Second):
		}
	}
}

func (p *hostileProxy) serveObject(w http.ResponseWriter, r *http.Request, n int) {
	if p.mode == "etag-not-body" {
		// MinIO would refuse the GET: it carries If-Match with the false
		// ETag, and the header is signed. The proxy serves the body itself.
		w.Header().Set("ETag", `"`+falseETag+`"`)
		w.Header().Set("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")
		w.Header().Set("Content-Length", strconv.Itoa(len(p.content)))
		w.Write(p.content)
		return
	}
	if p.mode == "huge-headers" {
		c, bw := p.hijack(w)
		defer c.Close()
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n")
		line := "X-Amz-Meta-Junk" + ": " + strings.Repeat("j", 1000) + "\r\n"
		for i := 0; i < 10<<10; i++ { // 10 MiB
			if _, err := bw.WriteString(line); err != nil {
				return
			}
		}
		bw.WriteString("\r\n")
		bw.Flush()
		return
	}
	if p.mode == "slow-headers" {
		resp, err := p.upstream(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		c, bw := p.hijack(w)
		defer c.Close()
		var hb bytes.Buffer
		hw := bufio.NewWriter(&hb)
		head(hw, resp.StatusCode, resp.Header)
		hw.Flush()
		p.trickle(c, bw, hb.Bytes())
		return
	}
	resp, err := p.upstream(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	h := resp.Header.Clone()
	h.Set("Connection", "close")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c, bw := p.hijack(w)
	defer c.Close()
	switch p.mode {
	case "slow-body":
		head(bw, resp.StatusCode, h)
		bw.Flush()
		p.trickle(c, bw, body)
		return
	case "reset-once", "reset-always":
		head(bw, resp.StatusCode, h)
		if p.mode == "reset-always" || n == 1 {
			bw.Write(body[:len(body)/2])
			bw.Flush()
			time.Sleep(50 * time.Millisecond) // let the client read some of it
			c.(*net.TCPConn).SetLinger(0)     // close with RST
			return
		}
		bw.Write(body)
	case "short-length":
		h.Set("Content-Length", strconv.Itoa(len(body)-1000))
		head(bw, resp.StatusCode, h)
		bw.Write(body)
	case "long-no-length":
		h.Del("Content-Length")
		head(bw, resp.StatusCode, h)
		bw.Write(body)
		bw.Write(bytes.Repeat([]byte("L"), 1000))
	case "extra-after":
		h.Del("Connection")
		head(bw, resp.StatusCode, h)
		bw.Write(body)
		bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\njunk!")
		bw.Write(bytes.Repeat([]byte("X"), 1000))
	case "wrong-etag":
		h.Set("ETag", `"`+md5hex([]byte("another object"))+`"`)
		head(bw, resp.StatusCode, h)
		bw.Write(body)
	}
	bw.Flush()
}

// falseETag is what etag-not-body claims for the target object.
var falseETag = md5hex([]byte("not the body"))

// rewriteListing passes MinIO's listing on with the target's ETag replaced
// by falseETag.
func (p *hostileProxy) rewriteListing(w http.ResponseWriter, r *http.Request) {
	resp, err := p.upstream(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	// The target's entry: <Key>big</Key>...<ETag>&#34;hex&#34;</ETag>
	i := bytes.Index(body, []byte("<Key>"+p.key+"</Key>"))
	if i >= 0 {
		j := bytes.Index(body[i:], []byte("<ETag>"))
		if j >= 0 {
			k := i + j + len("<ETag>")
			end := bytes.Index(body[k:], []byte("</ETag>"))
			body = append(append(append([]byte{}, body[:k]...), []byte("&#34;"+falseETag+"&#34;")...), body[k+end:]...)
		}
	}
	for k, vs := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}

const listHead = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><MaxKeys>1000</MaxKeys>`

// synthEntry is one synthesized listing entry: key, ETag and size, the
// least a pull needs (fewer elements decode faster, and the rows that list
// a million of them are the slowest).
func synthEntry(i int) string {
	return fmt.Sprintf(`<Contents><Key>synth/%07d</Key><ETag>&#34;%s&#34;</ETag><Size>0</Size></Contents>`, i, emptyETag)
}

func (p *hostileProxy) serveList(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/xml")
	switch p.mode {
	case "million-keys":
		const total, page = 1_000_000, 1000
		from := 0
		if tok := r.URL.Query().Get("continuation-token"); tok != "" {
			from, _ = strconv.Atoi(tok)
		}
		var b strings.Builder
		b.WriteString(listHead)
		to := min(from+page, total)
		fmt.Fprintf(&b, "<KeyCount>%d</KeyCount>", to-from)
		if to < total {
			fmt.Fprintf(&b, "<IsTruncated>true</IsTruncated><NextContinuationToken>%d</NextContinuationToken>", to)
		} else {
			b.WriteString("<IsTruncated>false</IsTruncated>")
		}
		for i := from; i < to; i++ {
			b.WriteString(synthEntry(i))
		}
		b.WriteString("</ListBucketResult>")
		w.Write([]byte(b.String()))
	case "empty-pages":
		n := 0
		if tok := r.URL.Query().Get("continuation-token"); tok != "" {
			n, _ = strconv.Atoi(tok)
		}
		fmt.Fprintf(w, "%s<KeyCount>0</KeyCount><IsTruncated>true</IsTruncated><NextContinuationToken>%d</NextContinuationToken></ListBucketResult>", listHead, n+1)
	case "nested-xml":
		const depth = 100_000
		w.Write([]byte(listHead))
		w.Write(bytes.Repeat([]byte("<a>"), depth))
		w.Write(bytes.Repeat([]byte("</a>"), depth))
		w.Write([]byte("</ListBucketResult>"))
	case "garbage-xml":
		w.Write(randBytes(99, 64<<10))
	case "html-page":
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<?xml version="1.0"?><html><head><title>Sign in</title></head><body><p>Accept the terms to continue.</p></body></html>`))
	case "oversized-xml", "oversized-key":
		// Streamed up to 512 MiB; the write fails as soon as the client
		// hangs up.
		const limit = 512 << 20
		fl := w.(http.Flusher)
		var sent int
		write := func(s []byte) bool {
			if _, err := w.Write(s); err != nil {
				return false
			}
			sent += len(s)
			return sent < limit
		}
		if !write([]byte(listHead + "<KeyCount>1000</KeyCount><IsTruncated>false</IsTruncated>")) {
			return
		}
		if p.mode == "oversized-key" {
			write([]byte("<Contents><Key>"))
			chunk := bytes.Repeat([]byte("k"), 64<<10)
			for write(chunk) {
			}
			fl.Flush()
			return
		}
		var buf bytes.Buffer
		for i := 0; ; i++ {
			buf.WriteString(synthEntry(i))
			if buf.Len() >= 64<<10 {
				if !write(buf.Bytes()) {
					break
				}
				buf.Reset()
			}
		}
		fl.Flush()
	}
}
