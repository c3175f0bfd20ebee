package export

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// AWS Signature Version 4, verified by hand from the AWS specification
// ("Authenticating Requests (AWS Signature Version 4)" in the S3 API
// reference). No maintained Go library verifies SigV4 on the server side:
// the AWS SDKs and minio-go only sign, and MinIO's and SeaweedFS's
// verifiers are internal to their servers. The tests check this code
// against AWS's documented example vectors and against minio-go's signer.
//
//	canonical request = METHOD \n CanonicalURI \n CanonicalQuery \n
//	                    CanonicalHeaders \n SignedHeaders \n PayloadHash
//	string to sign    = "AWS4-HMAC-SHA256" \n TIMESTAMP \n SCOPE \n
//	                    hex(SHA256(canonical request))
//	scope             = YYYYMMDD/REGION/s3/aws4_request
//	signing key       = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, YYYYMMDD),
//	                    REGION), "s3"), "aws4_request")
//	signature         = hex(HMAC(signing key, string to sign))
//
// Two ways to carry it are accepted: the Authorization header, and a
// presigned URL (X-Amz-* query parameters). Any region is accepted in the
// scope (the signature binds it; the export has no region of its own);
// the service must be "s3".
const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDateFmt   = "20060102T150405Z"
	scopeDateFmt = "20060102"
	// MaxClockSkew is how far a request's signing time may be from the
	// server's clock.
	MaxClockSkew = 15 * time.Minute
	// maxPresignExpiry is S3's limit on X-Amz-Expires (7 days).
	maxPresignExpiry = 7 * 24 * 3600
	unsignedPayload  = "UNSIGNED-PAYLOAD"
	emptySHA256      = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// authResult is who a request was verified for.
type authResult struct {
	accessKey   string
	payloadHash string // as the client declared it (unverified: bodies are never read)
	presigned   bool
}

// verifier checks SigV4 signatures against a fixed set of credentials.
type verifier struct {
	secrets map[string]string // access key -> secret key
	now     func() time.Time
}

// verify authenticates r. The body is never read: the payload hash it
// returns is what the client declared, and the caller decides whether a
// request with that payload may go on.
func (v *verifier) verify(r *http.Request) (authResult, *s3Error) {
	q, err := parseRawQuery(r.URL.RawQuery)
	if err != nil {
		return authResult{}, errInvalidArgument(fmt.Sprintf("query string: %v", err))
	}
	auth := r.Header.Get("Authorization")
	_, presigned := q.get("X-Amz-Algorithm")
	_, presignedSig := q.get("X-Amz-Signature")
	switch {
	case auth != "" && (presigned || presignedSig):
		return authResult{}, errInvalidArgument("only one auth mechanism allowed: Authorization header or presigned query parameters")
	case auth != "":
		return v.verifyHeader(r, q, auth)
	case presigned || presignedSig:
		return v.verifyPresigned(r, q)
	}
	return authResult{}, errAccessDenied("anonymous access is not allowed; sign requests with AWS Signature Version 4")
}

func (v *verifier) verifyHeader(r *http.Request, q rawQuery, auth string) (authResult, *s3Error) {
	rest, ok := strings.CutPrefix(auth, sigAlgorithm+" ")
	if !ok {
		if strings.HasPrefix(auth, "AWS ") {
			return authResult{}, errAccessDenied("AWS Signature Version 2 is not supported; use Signature Version 4")
		}
		return authResult{}, errMalformedAuth("unsupported authorization type; want " + sigAlgorithm)
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" {
			return authResult{}, errMalformedAuth(fmt.Sprintf("authorization header component %q is not key=value", part))
		}
		if _, dup := fields[k]; dup {
			return authResult{}, errMalformedAuth("authorization header repeats " + k)
		}
		fields[k] = val
	}
	if len(fields) != 3 || fields["Credential"] == "" || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return authResult{}, errMalformedAuth("authorization header needs exactly Credential, SignedHeaders and Signature")
	}
	cred, serr := parseCredential(fields["Credential"])
	if serr != nil {
		return authResult{}, serr
	}
	amzDate := r.Header.Get("X-Amz-Date")
	var t time.Time
	var err error
	if amzDate != "" {
		t, err = time.Parse(amzDateFmt, amzDate)
		if err != nil {
			return authResult{}, errAccessDenied(fmt.Sprintf("X-Amz-Date %q is not in the form %s", amzDate, amzDateFmt))
		}
	} else if d := r.Header.Get("Date"); d != "" {
		t, err = http.ParseTime(d)
		if err != nil {
			return authResult{}, errAccessDenied(fmt.Sprintf("Date header %q is not an HTTP date", d))
		}
		t = t.UTC()
		amzDate = t.Format(amzDateFmt)
	} else {
		return authResult{}, errAccessDenied("the request has neither X-Amz-Date nor Date")
	}
	if serr := cred.checkDate(t); serr != nil {
		return authResult{}, serr
	}
	if skew := v.now().Sub(t); skew > MaxClockSkew || skew < -MaxClockSkew {
		return authResult{}, errTimeSkewed(t, v.now())
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		return authResult{}, errInvalidArgument("X-Amz-Content-Sha256 header is missing; S3 Signature Version 4 requires it")
	}
	signed, serr := parseSignedHeaders(fields["SignedHeaders"])
	if serr != nil {
		return authResult{}, serr
	}
	secret, ok := v.secrets[cred.accessKey]
	if !ok {
		return authResult{}, errUnknownKey()
	}
	creq, serr := canonicalRequest(r, q, signed, payload, false)
	if serr != nil {
		return authResult{}, serr
	}
	want := signature(secret, cred, amzDate, creq)
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return authResult{}, errSignatureMismatch()
	}
	return authResult{accessKey: cred.accessKey, payloadHash: payload}, nil
}

func (v *verifier) verifyPresigned(r *http.Request, q rawQuery) (authResult, *s3Error) {
	get := func(name string) (string, *s3Error) {
		val, ok := q.get(name)
		if !ok || val == "" {
			return "", errPresignQuery(name + " is missing")
		}
		return val, nil
	}
	alg, serr := get("X-Amz-Algorithm")
	if serr != nil {
		return authResult{}, serr
	}
	if alg != sigAlgorithm {
		return authResult{}, errPresignQuery("X-Amz-Algorithm must be " + sigAlgorithm)
	}
	credText, serr := get("X-Amz-Credential")
	if serr != nil {
		return authResult{}, serr
	}
	cred, serr := parseCredential(credText)
	if serr != nil {
		return authResult{}, serr
	}
	amzDate, serr := get("X-Amz-Date")
	if serr != nil {
		return authResult{}, serr
	}
	t, err := time.Parse(amzDateFmt, amzDate)
	if err != nil {
		return authResult{}, errPresignQuery(fmt.Sprintf("X-Amz-Date %q is not in the form %s", amzDate, amzDateFmt))
	}
	if serr := cred.checkDate(t); serr != nil {
		return authResult{}, serr
	}
	expText, serr := get("X-Amz-Expires")
	if serr != nil {
		return authResult{}, serr
	}
	exp, err := strconv.Atoi(expText)
	if err != nil || exp < 1 || exp > maxPresignExpiry {
		return authResult{}, errPresignQuery(fmt.Sprintf("X-Amz-Expires %q: want 1 to %d seconds", expText, maxPresignExpiry))
	}
	signedText, serr := get("X-Amz-SignedHeaders")
	if serr != nil {
		return authResult{}, serr
	}
	signed, serr := parseSignedHeaders(signedText)
	if serr != nil {
		return authResult{}, serr
	}
	sig, serr := get("X-Amz-Signature")
	if serr != nil {
		return authResult{}, serr
	}
	now := v.now()
	if now.Before(t.Add(-MaxClockSkew)) {
		return authResult{}, errAccessDenied("request is not valid yet")
	}
	if now.After(t.Add(time.Duration(exp) * time.Second)) {
		return authResult{}, errAccessDenied("request has expired")
	}
	payload := unsignedPayload
	if p, ok := q.get("X-Amz-Content-Sha256"); ok && p != "" {
		payload = p
	} else if p := r.Header.Get("X-Amz-Content-Sha256"); p != "" {
		payload = p
	}
	secret, ok := v.secrets[cred.accessKey]
	if !ok {
		return authResult{}, errUnknownKey()
	}
	creq, serr := canonicalRequest(r, q, signed, payload, true)
	if serr != nil {
		return authResult{}, serr
	}
	want := signature(secret, cred, amzDate, creq)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return authResult{}, errSignatureMismatch()
	}
	return authResult{accessKey: cred.accessKey, payloadHash: payload, presigned: true}, nil
}

// credential is the parsed Credential component:
// ACCESSKEY/YYYYMMDD/REGION/SERVICE/aws4_request.
type credential struct {
	accessKey, date, region, service string
}

func (c credential) scope() string {
	return c.date + "/" + c.region + "/" + c.service + "/aws4_request"
}

func parseCredential(s string) (credential, *s3Error) {
	p := strings.Split(s, "/")
	if len(p) != 5 || p[0] == "" || p[2] == "" {
		return credential{}, errMalformedAuth(fmt.Sprintf("credential %q: want ACCESSKEY/YYYYMMDD/REGION/s3/aws4_request", s))
	}
	c := credential{accessKey: p[0], date: p[1], region: p[2], service: p[3]}
	if _, err := time.Parse(scopeDateFmt, c.date); err != nil {
		return credential{}, errMalformedAuth(fmt.Sprintf("credential date %q is not YYYYMMDD", c.date))
	}
	if c.service != "s3" {
		return credential{}, errMalformedAuth(fmt.Sprintf("credential service %q: want s3", c.service))
	}
	if p[4] != "aws4_request" {
		return credential{}, errMalformedAuth(fmt.Sprintf("credential terminator %q: want aws4_request", p[4]))
	}
	return c, nil
}

// checkDate requires the scope date to be the signing time's date.
func (c credential) checkDate(t time.Time) *s3Error {
	if t.UTC().Format(scopeDateFmt) != c.date {
		return errMalformedAuth(fmt.Sprintf("credential date %s does not match the request date %s", c.date, t.UTC().Format(scopeDateFmt)))
	}
	return nil
}

// parseSignedHeaders splits "a;b;c"; host must be among them.
func parseSignedHeaders(s string) ([]string, *s3Error) {
	hs := strings.Split(s, ";")
	host := false
	for _, h := range hs {
		if h == "" || h != strings.ToLower(h) {
			return nil, errMalformedAuth(fmt.Sprintf("signed headers %q: want lowercase names separated by ';'", s))
		}
		if h == "host" {
			host = true
		}
	}
	if !host {
		return nil, errMalformedAuth("the host header must be signed")
	}
	return hs, nil
}

// canonicalRequest builds the canonical request of r. With presigned set,
// X-Amz-Signature is left out of the query.
func canonicalRequest(r *http.Request, q rawQuery, signed []string, payload string, presigned bool) (string, *s3Error) {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path := r.URL.Path
	if path == "" {
		path = "/"
	}
	b.WriteString(awsEscape(path, false))
	b.WriteByte('\n')
	b.WriteString(q.canonical(presigned))
	b.WriteByte('\n')
	for _, h := range signed {
		var val string
		switch h {
		case "host":
			val = r.Host
		case "content-length":
			val = r.Header.Get("Content-Length")
			if val == "" && r.ContentLength >= 0 {
				val = strconv.FormatInt(r.ContentLength, 10)
			}
		default:
			vs := r.Header.Values(h)
			if len(vs) == 0 {
				return "", errAccessDenied(fmt.Sprintf("signed header %q is not in the request", h))
			}
			parts := make([]string, len(vs))
			for i, v := range vs {
				parts[i] = trimAll(v)
			}
			val = strings.Join(parts, ",")
		}
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(trimAll(val))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(strings.Join(signed, ";"))
	b.WriteByte('\n')
	b.WriteString(payload)
	return b.String(), nil
}

// trimAll trims a header value and collapses runs of spaces to one.
func trimAll(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// signature returns the hex signature of a canonical request.
func signature(secret string, c credential, amzDate, creq string) string {
	sum := sha256.Sum256([]byte(creq))
	sts := sigAlgorithm + "\n" + amzDate + "\n" + c.scope() + "\n" + hex.EncodeToString(sum[:])
	k := hmacSHA256([]byte("AWS4"+secret), c.date)
	k = hmacSHA256(k, c.region)
	k = hmacSHA256(k, c.service)
	k = hmacSHA256(k, "aws4_request")
	return hex.EncodeToString(hmacSHA256(k, sts))
}

// awsEscape percent-encodes every byte except the unreserved characters
// A-Z a-z 0-9 - _ . ~ (and '/' unless encodeSlash), with upper-case hex,
// as SigV4 and S3's "url" encoding type want.
func awsEscape(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// rawQuery is a query string split into decoded name/value pairs, in
// order, with repeats kept.
type rawQuery []queryParam

type queryParam struct {
	name, value string
	hasValue    bool
}

// parseRawQuery splits a raw query on '&' and decodes each side of '='
// ('+' is a space, as clients encode a space as %20 or '+').
func parseRawQuery(raw string) (rawQuery, error) {
	var q rawQuery
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, has := strings.Cut(part, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("parameter %q: %v", k, err)
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("value of %q: %v", name, err)
		}
		q = append(q, queryParam{name: name, value: value, hasValue: has})
	}
	return q, nil
}

// get returns the first value of name.
func (q rawQuery) get(name string) (string, bool) {
	for _, p := range q {
		if p.name == name {
			return p.value, true
		}
	}
	return "", false
}

// canonical is the SigV4 canonical query string: every parameter
// (X-Amz-Signature left out for presigned URLs) encoded, sorted by name
// then value, "name=value" joined with '&'.
func (q rawQuery) canonical(presigned bool) string {
	ps := make([]string, 0, len(q))
	type kv struct{ k, v string }
	var kvs []kv
	for _, p := range q {
		if presigned && p.name == "X-Amz-Signature" {
			continue
		}
		kvs = append(kvs, kv{awsEscape(p.name, true), awsEscape(p.value, true)})
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].k != kvs[j].k {
			return kvs[i].k < kvs[j].k
		}
		return kvs[i].v < kvs[j].v
	})
	for _, p := range kvs {
		ps = append(ps, p.k+"="+p.v)
	}
	return strings.Join(ps, "&")
}
