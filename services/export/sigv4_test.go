package export

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"
)

// The AWS documentation's example credentials and time.
const (
	awsAccessKey = "AKIAIOSFODNN7EXAMPLE"
	awsSecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

var awsExampleTime = time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)

func awsVerifier(now time.Time) *verifier {
	return &verifier{secrets: map[string]string{awsAccessKey: awsSecretKey}, now: func() time.Time { return now }}
}

// TestAWSExampleVectors checks the verifier against the signed examples in
// AWS's "Signature Calculations for the Authorization Header" and "Query
// String Authentication" pages of the S3 API reference.
func TestAWSExampleVectors(t *testing.T) {
	type hdr = [2]string
	authz := func(signed, sig string) string {
		return "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=" + signed + ",Signature=" + sig
	}
	tests := []struct {
		name      string
		method    string
		target    string // path and query as sent
		headers   []hdr
		canonical string // the canonical request AWS shows, when it shows one
	}{
		{
			name: "GET Object", method: "GET", target: "/test.txt",
			headers: []hdr{
				{"Range", "bytes=0-9"},
				{"X-Amz-Content-Sha256", emptySHA256},
				{"X-Amz-Date", "20130524T000000Z"},
				{"Authorization", authz("host;range;x-amz-content-sha256;x-amz-date", "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")},
			},
			canonical: "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n" +
				"x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\n" +
				"host;range;x-amz-content-sha256;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		},
		{
			name: "PUT Object", method: "PUT", target: "/test$file.text",
			headers: []hdr{
				{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
				{"X-Amz-Date", "20130524T000000Z"},
				{"X-Amz-Storage-Class", "REDUCED_REDUNDANCY"},
				{"X-Amz-Content-Sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"},
				{"Authorization", authz("date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class", "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")},
			},
			canonical: "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:examplebucket.s3.amazonaws.com\n" +
				"x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\nx-amz-date:20130524T000000Z\n" +
				"x-amz-storage-class:REDUCED_REDUNDANCY\n\ndate;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n" +
				"44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
		},
		{
			name: "GET Bucket Lifecycle", method: "GET", target: "/?lifecycle",
			headers: []hdr{
				{"X-Amz-Date", "20130524T000000Z"},
				{"X-Amz-Content-Sha256", emptySHA256},
				{"Authorization", authz("host;x-amz-content-sha256;x-amz-date", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")},
			},
		},
		{
			name: "GET Bucket (List Objects)", method: "GET", target: "/?max-keys=2&prefix=J",
			headers: []hdr{
				{"X-Amz-Date", "20130524T000000Z"},
				{"X-Amz-Content-Sha256", emptySHA256},
				{"Authorization", authz("host;x-amz-content-sha256;x-amz-date", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")},
			},
		},
		{
			name: "presigned GET Object", method: "GET",
			target: "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" +
				"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" +
				"&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://examplebucket.s3.amazonaws.com"+tt.target, nil)
			for _, h := range tt.headers {
				r.Header.Set(h[0], h[1])
			}
			if tt.canonical != "" {
				q, err := parseRawQuery(r.URL.RawQuery)
				if err != nil {
					t.Fatal(err)
				}
				signed := strings.Split(strings.SplitN(strings.SplitN(r.Header.Get("Authorization"), "SignedHeaders=", 2)[1], ",", 2)[0], ";")
				got, serr := canonicalRequest(r, q, signed, r.Header.Get("X-Amz-Content-Sha256"), false)
				if serr != nil {
					t.Fatal(serr)
				}
				if got != tt.canonical {
					t.Errorf("canonical request:\n%s\nwant:\n%s", got, tt.canonical)
				}
			}
			a, serr := awsVerifier(awsExampleTime.Add(time.Minute)).verify(r)
			if serr != nil {
				t.Fatalf("verify: %v", serr)
			}
			if a.accessKey != awsAccessKey {
				t.Errorf("access key %q", a.accessKey)
			}
			// One bit off in the signature must fail.
			bad := httptest.NewRequest(tt.method, "http://examplebucket.s3.amazonaws.com"+flipLastHex(tt.target), nil)
			for _, h := range tt.headers {
				v := h[1]
				if h[0] == "Authorization" {
					v = flipLastHex(v)
				}
				bad.Header.Set(h[0], v)
			}
			if _, serr := awsVerifier(awsExampleTime).verify(bad); serr == nil || serr.code != "SignatureDoesNotMatch" {
				t.Errorf("a changed signature gave %v, want SignatureDoesNotMatch", serr)
			}
		})
	}
}

// flipLastHex changes the last character of a signature at the end of s
// (a no-op when s does not end in one).
func flipLastHex(s string) string {
	i := strings.LastIndex(s, "Signature=")
	if i < 0 || len(s) == 0 {
		return s
	}
	last := s[len(s)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return s[:len(s)-1] + string(repl)
}

// signedRequest builds a request as minio-go's signer signs it and returns
// it as the server receives it.
func signedRequest(t *testing.T, method, rawURL string, headers map[string]string, ak, sk string, presign int64) *http.Request {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	var signed *http.Request
	if presign > 0 {
		signed = signer.PreSignV4(*req, ak, sk, "", "us-east-1", presign)
	} else {
		req.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
		signed = signer.SignV4(*req, ak, sk, "", "us-east-1")
	}
	// What the server sees: the request line as the client writes it.
	srv := httptest.NewRequest(method, signed.URL.RequestURI(), nil)
	srv.Host = signed.URL.Host
	for k, vs := range signed.Header {
		for _, v := range vs {
			srv.Header.Add(k, v)
		}
	}
	return srv
}

// TestMinioSignerRoundTrip verifies requests signed by minio-go (the
// signer rclone's and mc's counterparts agree with) for hostile keys and
// every query parameter the export reads.
func TestMinioSignerRoundTrip(t *testing.T) {
	const ak, sk = "export-test-key", "export-test-secret-0123456789"
	v := &verifier{secrets: map[string]string{ak: sk}, now: time.Now}
	paths := []string{
		"/", "/docs", "/docs/",
		"/docs/20260101T000000Z-0011aabb/plain.txt",
		"/docs/latest/dir/ünïcødé 🙂.bin",
		"/docs/latest/../x",
		"/docs/latest/query?x=1&y=2",
		"/docs/latest/percent%20literal%2F+plus",
		"/docs/latest/hash#frag;semi,comma:colon@at!bang$dollar'quote(paren)*star=eq",
		"/docs/latest/" + strings.Repeat("long", 200),
		"/docs/latest/with  two  spaces /",
	}
	queries := []string{
		"",
		"list-type=2&prefix=a%2Fb&delimiter=%2F&max-keys=3&encoding-type=url&fetch-owner=true",
		"list-type=2&continuation-token=djEAAGEvYg&start-after=%C3%BC%20x",
		"location",
		"versioning",
		"prefix=%2B%20%25&marker=x",
		"response-content-type=text%2Fplain%3B%20charset%3Dutf-8",
	}
	for _, p := range paths {
		for _, q := range queries {
			for _, presign := range []int64{0, 3600} {
				u := (&url.URL{Scheme: "https", Host: "127.0.0.1:9443", Path: p, RawQuery: q}).String()
				r := signedRequest(t, http.MethodGet, u, map[string]string{"Range": "bytes=0-9"}, ak, sk, presign)
				a, serr := v.verify(r)
				if serr != nil {
					t.Errorf("path %q query %q presign %d: %v", p, q, presign, serr)
					continue
				}
				if a.accessKey != ak || a.presigned != (presign > 0) {
					t.Errorf("path %q: result %+v", p, a)
				}
			}
		}
	}
}

// TestVerifyRefusals checks what must not pass.
func TestVerifyRefusals(t *testing.T) {
	const ak, sk = "export-test-key", "export-test-secret-0123456789"
	now := time.Now()
	v := &verifier{secrets: map[string]string{ak: sk}, now: func() time.Time { return now }}
	base := "https://127.0.0.1:9443/docs/latest/a.txt"
	sign := func(mod func(*http.Request)) func(t *testing.T) *http.Request {
		return func(t *testing.T) *http.Request {
			r := signedRequest(t, http.MethodGet, base, nil, ak, sk, 0)
			if mod != nil {
				mod(r)
			}
			return r
		}
	}
	at := func(d time.Duration) func(t *testing.T) *http.Request {
		return func(t *testing.T) *http.Request {
			// minio-go signs with the wall clock; move the server's instead.
			r := signedRequest(t, http.MethodGet, base, nil, ak, sk, 0)
			v.now = func() time.Time { return now.Add(-d) }
			return r
		}
	}
	tests := []struct {
		name string
		req  func(t *testing.T) *http.Request
		code string
	}{
		{"anonymous", func(*testing.T) *http.Request { return httptest.NewRequest("GET", "/docs/latest/a.txt", nil) }, "AccessDenied"},
		{"wrong secret", func(t *testing.T) *http.Request {
			return signedRequest(t, http.MethodGet, base, nil, ak, sk+"x", 0)
		}, "SignatureDoesNotMatch"},
		{"unknown access key", func(t *testing.T) *http.Request {
			return signedRequest(t, http.MethodGet, base, nil, "someone-else", sk, 0)
		}, "InvalidAccessKeyId"},
		{"path changed after signing", sign(func(r *http.Request) { r.URL.Path = "/docs/latest/b.txt" }), "SignatureDoesNotMatch"},
		{"query added after signing", sign(func(r *http.Request) { r.URL.RawQuery = "versionId=1" }), "SignatureDoesNotMatch"},
		{"host changed", sign(func(r *http.Request) { r.Host = "127.0.0.1:9444" }), "SignatureDoesNotMatch"},
		{"signed header missing", sign(func(r *http.Request) {
			r.Header.Del("X-Amz-Date")
			r.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		}), "AccessDenied"},
		{"payload hash changed", sign(func(r *http.Request) { r.Header.Set("X-Amz-Content-Sha256", emptySHA256) }), "SignatureDoesNotMatch"},
		{"no payload hash", sign(func(r *http.Request) { r.Header.Del("X-Amz-Content-Sha256") }), "InvalidArgument"},
		{"host not signed", sign(func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "SignedHeaders=host;", "SignedHeaders=", 1))
		}), "AuthorizationHeaderMalformed"},
		{"other service", sign(func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/s3/", "/ec2/", 1))
		}), "AuthorizationHeaderMalformed"},
		{"scope date not the request date", sign(func(r *http.Request) {
			d := time.Now().UTC().Format(scopeDateFmt)
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/"+d+"/", "/20130524/", 1))
		}), "AuthorizationHeaderMalformed"},
		{"signature version 2", func(*testing.T) *http.Request {
			r := httptest.NewRequest("GET", "/docs/latest/a.txt", nil)
			r.Header.Set("Authorization", "AWS "+ak+":frJIUN8DYpKDtOLCwo//yllqDzg=")
			return r
		}, "AccessDenied"},
		{"garbage authorization", func(*testing.T) *http.Request {
			r := httptest.NewRequest("GET", "/docs/latest/a.txt", nil)
			r.Header.Set("Authorization", "Bearer abc")
			return r
		}, "AuthorizationHeaderMalformed"},
		{"header and query auth", sign(func(r *http.Request) { r.URL.RawQuery = "X-Amz-Algorithm=AWS4-HMAC-SHA256" }), "InvalidArgument"},
		{"clock 16 minutes behind the request", at(-16 * time.Minute), "RequestTimeTooSkewed"},
		{"clock 16 minutes ahead of the request", at(16 * time.Minute), "RequestTimeTooSkewed"},
		{"presigned, expired", func(t *testing.T) *http.Request {
			r := signedRequest(t, http.MethodGet, base, nil, ak, sk, 60)
			v.now = func() time.Time { return now.Add(2 * time.Minute) }
			return r
		}, "AccessDenied"},
		{"presigned, not yet valid", func(t *testing.T) *http.Request {
			r := signedRequest(t, http.MethodGet, base, nil, ak, sk, 60)
			v.now = func() time.Time { return now.Add(-time.Hour) }
			return r
		}, "AccessDenied"},
		{"presigned, expiry too long", func(t *testing.T) *http.Request {
			return signedRequest(t, http.MethodGet, base, nil, ak, sk, 8*24*3600)
		}, "AuthorizationQueryParametersError"},
		{"presigned, signature changed", func(t *testing.T) *http.Request {
			r := signedRequest(t, http.MethodGet, base, nil, ak, sk, 60)
			r.URL.RawQuery = flipLastHex(r.URL.RawQuery)
			return r
		}, "SignatureDoesNotMatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v.now = func() time.Time { return now }
			r := tt.req(t)
			a, serr := v.verify(r)
			if serr == nil {
				t.Fatalf("verified as %+v; want %s", a, tt.code)
			}
			if serr.code != tt.code {
				t.Errorf("code %s (%s), want %s", serr.code, serr.message, tt.code)
			}
		})
	}
	// Within 15 minutes either way still passes.
	for _, d := range []time.Duration{-14 * time.Minute, 14 * time.Minute} {
		r := signedRequest(t, http.MethodGet, base, nil, ak, sk, 0)
		v.now = func() time.Time { return time.Now().Add(d) }
		if _, serr := v.verify(r); serr != nil {
			t.Errorf("skew %s: %v", d, serr)
		}
	}
}

func TestAWSEscape(t *testing.T) {
	tests := []struct{ in, slash, noSlash string }{
		{"a-b_c.d~e", "a-b_c.d~e", "a-b_c.d~e"},
		{"a b/c", "a%20b%2Fc", "a%20b/c"},
		{"ü+%", "%C3%BC%2B%25", "%C3%BC%2B%25"},
		{"\xff\x00", "%FF%00", "%FF%00"},
	}
	for _, tt := range tests {
		if got := awsEscape(tt.in, true); got != tt.slash {
			t.Errorf("awsEscape(%q, true) = %q, want %q", tt.in, got, tt.slash)
		}
		if got := awsEscape(tt.in, false); got != tt.noSlash {
			t.Errorf("awsEscape(%q, false) = %q, want %q", tt.in, got, tt.noSlash)
		}
		// S3 clients decode listings with url.QueryUnescape.
		if back, err := url.QueryUnescape(awsEscape(tt.in, false)); err != nil || back != tt.in {
			t.Errorf("QueryUnescape(awsEscape(%q)) = %q, %v", tt.in, back, err)
		}
	}
}
