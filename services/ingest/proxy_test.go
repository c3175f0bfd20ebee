package ingest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// countingProxy is an HTTP reverse proxy on 127.0.0.1 that counts object
// GETs (requests for a key, not bucket-level listing or configuration).
type countingProxy struct {
	Endpoint string
	mu       sync.Mutex
	gets     map[string]int // object path -> GETs
	ranged   int
}

func newCountingProxy(t testing.TB, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse("http://" + target)
	if err != nil {
		t.Fatal(err)
	}
	cp := &countingProxy{gets: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{Proxy: nil}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Path-style: /bucket/key...; a key GET has a second segment.
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)
		if r.Method == http.MethodGet && len(parts) == 2 && parts[1] != "" {
			cp.mu.Lock()
			cp.gets[parts[1]]++
			if r.Header.Get("Range") != "" {
				cp.ranged++
			}
			cp.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cp.Endpoint = strings.TrimPrefix(srv.URL, "http://")
	return cp
}

// objectGets returns the GET count per key (path-style requests) and in all.
func (cp *countingProxy) objectGets() (map[string]int, int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out := map[string]int{}
	n := 0
	for k, v := range cp.gets {
		out[k] = v
		n += v
	}
	return out, n
}

// tcpProxy forwards TCP connections on 127.0.0.1 to a target and can cut
// or corrupt the server-to-client stream of a connection once it has passed
// `at` bytes: cut closes both directions there; flip inverts that byte.
type tcpProxy struct {
	Endpoint string
	target   string
	at       int64
	mode     string       // "cut" or "flip"
	left     atomic.Int64 // cuts/flips left; negative: unlimited
	fired    atomic.Int64
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newTCPProxy(t testing.TB, target, mode string, at int64, times int64) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{Endpoint: ln.Addr().String(), target: target, at: at, mode: mode, ln: ln}
	p.left.Store(times)
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

// take reports whether this connection may misbehave.
func (p *tcpProxy) take() bool {
	for {
		n := p.left.Load()
		if n == 0 {
			return false
		}
		if n < 0 || p.left.CompareAndSwap(n, n-1) {
			p.fired.Add(1)
			return true
		}
	}
}

func (p *tcpProxy) handle(c net.Conn) {
	defer c.Close()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer u.Close()
	go func() {
		io.Copy(u, c)
		u.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 32<<10)
	var passed int64
	armed := true
	for {
		n, err := u.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if armed && passed+int64(n) > p.at {
				if p.take() {
					i := p.at - passed
					if p.mode == "cut" {
						c.Write(chunk[:i])
						return // closes both ends mid-body
					}
					chunk[i] ^= 0xff
				}
				armed = false
			}
			passed += int64(n)
			if _, werr := c.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection
		}
	}
}
