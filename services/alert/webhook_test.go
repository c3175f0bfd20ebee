package alert

import (
	"context"
	"crypto/hmac"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testSecret = "0123456789abcdef-webhook-TOPSECRET"
	testToken  = "bearer-TOPSECRET-token"
)

// receiver is an HTTPS webhook endpoint on 127.0.0.1 that records each
// request and answers with the next status of its script (then 200).
type receiver struct {
	srv  *httptest.Server
	pool *x509.CertPool

	mu       sync.Mutex
	requests []receivedRequest
	script   []int
	handler  func(w http.ResponseWriter, r *http.Request) bool // true: handled
}

type receivedRequest struct {
	header http.Header
	body   []byte
	path   string
}

func startReceiver(t *testing.T, script ...int) *receiver {
	t.Helper()
	rc := &receiver{script: script}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, receivedRequest{header: r.Header.Clone(), body: body, path: r.URL.Path})
		status := http.StatusOK
		if len(rc.script) > 0 {
			status, rc.script = rc.script[0], rc.script[1:]
		}
		h := rc.handler
		rc.mu.Unlock()
		if h != nil && h(w, r) {
			return
		}
		if status >= 300 && status < 400 {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, "status %d from the test receiver", status)
	}))
	t.Cleanup(rc.srv.Close)
	rc.pool = x509.NewCertPool()
	rc.pool.AddCert(rc.srv.Certificate())
	return rc
}

func (rc *receiver) Requests() []receivedRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receivedRequest(nil), rc.requests...)
}

func (rc *receiver) webhook(t *testing.T, path string) *Webhook {
	t.Helper()
	w, err := NewWebhook(WebhookConfig{URL: rc.srv.URL + path, Secret: testSecret, BearerToken: testToken, RootCAs: rc.pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.CloseIdleConnections)
	return w
}

// checkSigned checks the request's signature and bearer token.
func checkSigned(t *testing.T, r receivedRequest) {
	t.Helper()
	if got, want := r.header.Get(SignatureHeader), Sign([]byte(testSecret), r.body); !hmac.Equal([]byte(got), []byte(want)) {
		t.Errorf("signature %q, want %q", got, want)
	}
	if got := r.header.Get("Authorization"); got != "Bearer "+testToken {
		t.Errorf("Authorization %q", got)
	}
}

func TestWebhookDelivers(t *testing.T) {
	rc := startReceiver(t)
	w := rc.webhook(t, "/hooks/holdfast")
	a := massChange()
	m := Message{ID: "00112233445566778899aabbccddeeff", Appliance: "holdfast-01", Alert: a}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.Send(ctx, m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	reqs := rc.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	checkSigned(t, r)
	// A receiver that checks the signature refuses a changed body.
	forged := strings.Replace(string(r.body), `"gone":50`, `"gone":0`, 1)
	if forged == string(r.body) || hmac.Equal([]byte(Sign([]byte(testSecret), []byte(forged))), []byte(r.header.Get(SignatureHeader))) {
		t.Errorf("a changed body still matches the signature")
	}
	if r.path != "/hooks/holdfast" || r.header.Get("Content-Type") != "application/json" || r.header.Get(IDHeader) != m.ID {
		t.Errorf("path %q, headers %v", r.path, r.header)
	}
	var doc struct {
		Version    int               `json:"version"`
		ID         string            `json:"id"`
		Appliance  string            `json:"appliance"`
		Kind       string            `json:"kind"`
		Source     string            `json:"source"`
		Time       time.Time         `json:"time"`
		Message    string            `json:"message"`
		Snapshot   string            `json:"snapshot"`
		Held       []string          `json:"held"`
		MassChange map[string]int    `json:"mass_change"`
		Details    map[string]string `json:"details"`
		Folded     *int              `json:"folded"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.body)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"version", doc.Version, 1},
		{"id", doc.ID, m.ID},
		{"appliance", doc.Appliance, "holdfast-01"},
		{"kind", doc.Kind, KindMassChange},
		{"source", doc.Source, "mail-archive"},
		{"time", doc.Time.Equal(a.Time), true},
		{"message", doc.Message, a.Message},
		{"snapshot", doc.Snapshot, a.Snapshot},
		{"held", strings.Join(doc.Held, ","), strings.Join(a.Held, ",")},
		{"mass_change", fmt.Sprint(doc.MassChange), "map[changed:0 gone:50 previous:50]"},
		{"details", doc.Details["threshold"], "30%"},
		{"folded", doc.Folded != nil && *doc.Folded == 0, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
	var raw map[string]any
	_ = json.Unmarshal(r.body, &raw)
	if _, ok := raw["window_start"]; ok {
		t.Errorf("a plain alert has window_start: %s", r.body)
	}
}

// TestWebhookReplies: how each reply is classed, that nothing is retried
// or followed that should not be, and that the URL's path (which may hold
// a token) is never in an error.
func TestWebhookReplies(t *testing.T) {
	tests := []struct {
		status    int
		permanent bool
	}{
		{http.StatusNoContent, false},
		{http.StatusBadRequest, true},
		{http.StatusUnauthorized, true},
		{http.StatusNotFound, true},
		{http.StatusFound, true}, // redirect: never followed
		{http.StatusRequestTimeout, false},
		{http.StatusTooManyRequests, false},
		{http.StatusInternalServerError, false},
		{http.StatusServiceUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			rc := startReceiver(t, tt.status)
			w := rc.webhook(t, "/hooks/PATHTOKEN?key=QUERYTOKEN")
			err := w.Send(t.Context(), Message{Appliance: "hf", Alert: massChange()})
			if got := len(rc.Requests()); got != 1 {
				t.Errorf("%d requests, want 1 (no redirect followed, no retry inside Send)", got)
			}
			if tt.status < 300 {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if !strings.Contains(err.Error(), fmt.Sprint(tt.status)) {
				t.Errorf("error %q does not give the status", err)
			}
			if IsPermanent(err) != tt.permanent {
				t.Errorf("IsPermanent(%q) = %v, want %v", err, IsPermanent(err), tt.permanent)
			}
			for _, secret := range []string{"PATHTOKEN", "QUERYTOKEN", "TOPSECRET"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q leaks %s", err, secret)
				}
			}
		})
	}
}

func TestWebhookTransportFailures(t *testing.T) {
	rc := startReceiver(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "https://" + closed.Addr().String() + "/hooks/PATHTOKEN"
	closed.Close()
	tests := []struct {
		name      string
		cfg       WebhookConfig
		want      string
		permanent bool
	}{
		{"untrusted certificate", WebhookConfig{URL: rc.srv.URL + "/hooks/PATHTOKEN"}, "certificate", true},
		{"connection refused", WebhookConfig{URL: closedURL, RootCAs: rc.pool}, "refused", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWebhook(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = w.Send(t.Context(), Message{Appliance: "hf", Alert: massChange()})
			if err == nil || !strings.Contains(err.Error(), tt.want) || IsPermanent(err) != tt.permanent {
				t.Fatalf("Send = %v; want an error mentioning %q, permanent=%v", err, tt.want, tt.permanent)
			}
			if strings.Contains(err.Error(), "PATHTOKEN") {
				t.Errorf("error %q leaks the URL's path", err)
			}
		})
	}
}

// TestNewWebhookRefuses: only https:// URLs are accepted, and the refusal
// does not repeat the path.
func TestNewWebhookRefuses(t *testing.T) {
	tests := []struct{ url, want string }{
		{"http://hooks.example.com/PATHTOKEN", `scheme "http"`},
		{"HTTP://hooks.example.com/PATHTOKEN", `scheme "http"`},
		{"ftp://hooks.example.com/PATHTOKEN", `scheme "ftp"`},
		{"hooks.example.com/PATHTOKEN", "scheme"},
		{"https:///PATHTOKEN", "no host"},
		{"https://user:pw@hooks.example.com/PATHTOKEN", "user information"},
		{"https://hooks.example.com:99999/PATHTOKEN", "port"},
		{"https://hooks.example.com/PATHTOKEN#frag", "fragment"},
		{"https://hooks.example.com/PATH TOKEN", "space"},
		{"", "empty"},
	}
	for _, tt := range tests {
		_, err := NewWebhook(WebhookConfig{URL: tt.url})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewWebhook(%q) = %v; want an error mentioning %q", tt.url, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), "PATHTOKEN") {
			t.Errorf("NewWebhook(%q): error %q repeats the path", tt.url, err)
		}
	}
}

// TestWebhookNoEnvironmentProxy: the transport has no proxy function, so
// HTTPS_PROXY and friends are never consulted. (A behavioural test cannot
// show it on loopback: Go never proxies requests to 127.0.0.1 anyway.)
func TestWebhookNoEnvironmentProxy(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	w, err := NewWebhook(WebhookConfig{URL: "https://hooks.example.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	tr, ok := w.client.Transport.(*http.Transport)
	if !ok || tr.Proxy != nil {
		t.Fatalf("transport %T has a proxy function", w.client.Transport)
	}
	rc := startReceiver(t)
	if err := rc.webhook(t, "/").Send(t.Context(), Message{Appliance: "hf", Alert: massChange()}); err != nil {
		t.Fatalf("Send with proxy variables set: %v", err)
	}
}

// TestWebhookRetried: 500 then 200 delivers once, with the same id and
// body (and so the same signature) on both attempts.
func TestWebhookRetried(t *testing.T) {
	rc := startReceiver(t, http.StatusInternalServerError, http.StatusBadGateway)
	log, _ := testLog(t)
	d := New(Options{Appliance: "hf", Log: log, Senders: []Sender{rc.webhook(t, "/h")}, Backoff: 10 * time.Millisecond, MaxAttempts: 5})
	if err := d.Alert(t.Context(), massChange()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := rc.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (500, 502, 200)", len(reqs))
	}
	for _, r := range reqs {
		checkSigned(t, r)
		if string(r.body) != string(reqs[0].body) {
			t.Errorf("retry body differs:\n%s\n%s", r.body, reqs[0].body)
		}
	}
	if st := d.Stats(); st.Sent != 1 || st.Failed != 0 || st.Queued != 1 {
		t.Errorf("stats %+v, want 1 queued, 1 sent", st)
	}
}

// TestWebhookHangDoesNotBlock: a receiver that never answers does not slow
// Alert down; each attempt ends at SendTimeout and Close gives up at its
// context's deadline.
func TestWebhookHangDoesNotBlock(t *testing.T) {
	rc := startReceiver(t)
	release := make(chan struct{})
	rc.handler = func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	}
	defer close(release)
	log, logs := testLog(t)
	d := New(Options{Appliance: "hf", Log: log, Senders: []Sender{rc.webhook(t, "/h")},
		SendTimeout: 200 * time.Millisecond, Backoff: 10 * time.Millisecond, MaxAttempts: 2, RateLimit: 1000})
	const n = 50
	start := time.Now()
	for i := range n {
		a := massChange()
		a.Source = fmt.Sprintf("src-%d", i)
		if err := d.Alert(t.Context(), a); err != nil {
			t.Fatalf("Alert %d: %v", i, err)
		}
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("%d Alert calls took %s with a hanging receiver; want well under 100ms", n, took)
	}
	// The first attempt is under way and hangs.
	waitFor(t, 5*time.Second, "the first request", func() bool { return len(rc.Requests()) >= 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	err := d.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "undelivered") {
		t.Fatalf("Close = %v; want it to give up on undelivered messages", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %s with a 300ms deadline", took)
	}
	if st := d.Stats(); st.Sent != 0 || st.Failed != n || st.Queued != n {
		t.Errorf("stats %+v; want %d queued and failed, none sent", st, n)
	}
	if !strings.Contains(logs.String(), "alert not delivered") {
		t.Errorf("the given-up alerts were not logged")
	}
}
