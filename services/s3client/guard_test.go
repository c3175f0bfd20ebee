package s3client

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

const listing = `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Contents><Key>a&lt;b&gt;/c</Key>` +
	`<ETag>&#34;d41d8cd98f00b204e9800998ecf8427e&#34;</ETag><Size>0</Size><Owner><ID>x</ID><DisplayName/></Owner></Contents>` +
	`<IsTruncated>false</IsTruncated></ListBucketResult>`

// tricky nests 31 deep, with '>' and '/' in attribute values, comments
// and self-closing elements that must not count.
var tricky = `<?xml version="1.0"?><!-- <a><a><a> --><!DOCTYPE x><VersioningConfiguration a="/>" b='>'><![CDATA[<a><a>]]>` +
	strings.Repeat(`<x y="</x>"/>`, 100) + strings.Repeat("<a>", 30) + strings.Repeat("</a>", 30) + `</VersioningConfiguration>`

func TestGuard(t *testing.T) {
	// The server's behaviour is chosen by the path; the query only tells
	// the guard what kind of request it is.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fl := w.(http.Flusher)
		switch r.URL.Path {
		case "/trickle": // one byte every 50ms, forever
			w.WriteHeader(http.StatusOK)
			for {
				if _, err := w.Write([]byte{'x'}); err != nil {
					return
				}
				fl.Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		case "/silent": // headers, then nothing
			w.WriteHeader(http.StatusOK)
			fl.Flush()
			<-r.Context().Done()
		case "/doc": // the document in ?doc=
			w.Write([]byte(r.URL.Query().Get("doc")))
		case "/entries": // a listing of N empty entries
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Write([]byte("<ListBucketResult><Name>b</Name>"))
			w.Write(bytes.Repeat([]byte("<Contents><Key>k</Key></Contents>"), n))
			w.Write([]byte("</ListBucketResult>"))
		case "/nested":
			w.Write([]byte("<ListBucketResult>"))
			w.Write(bytes.Repeat([]byte("<a>"), 100))
			w.Write(bytes.Repeat([]byte("</a>"), 100))
			w.Write([]byte("</ListBucketResult>"))
		case "/error":
			w.WriteHeader(http.StatusNotFound)
			w.Write(bytes.Repeat([]byte("e"), 2048))
		default: // /size/N: N bytes at once
			n, _ := strconv.Atoi(r.URL.Path[len("/size/"):])
			w.Write(bytes.Repeat([]byte("b"), n))
		}
	}))
	defer srv.Close()
	tests := []struct {
		name     string
		path     string
		g        guard
		slowRead time.Duration // the consumer sleeps this long between reads
		want     int           // bytes read before the error (or EOF)
		wantErr  any           // nil, *StallError or *TooLargeError
	}{
		{"trickle below the minimum", "/trickle", guard{window: 300 * time.Millisecond, minBytes: 100}, 0, -1, &StallError{}},
		{"silent body, idle timeout", "/silent", guard{window: 200 * time.Millisecond}, 0, 0, &StallError{}},
		{"slow consumer is not the server's fault", "/size/65536", guard{window: 100 * time.Millisecond, minBytes: 1 << 20}, 120 * time.Millisecond, 65536, nil},
		{"listing over the bound", "/size/2049?list-type=2", guard{maxXML: 2048}, 0, -1, &TooLargeError{}},
		{"listing at the bound", "/size/2048?list-type=2", guard{maxXML: 2048}, 0, 2048, nil},
		{"versioning over the bound", "/size/4096?versioning=", guard{maxXML: 2048}, 0, -1, &TooLargeError{}},
		{"object content is not bounded", "/size/4096?versionId=v1", guard{maxXML: 2048}, 0, 4096, nil},
		{"error document over the bound", "/error", guard{maxXML: 1024}, 0, -1, &TooLargeError{}},
		{"listing nested 100 deep", "/nested?list-type=2", guard{maxXML: 1 << 20}, 0, -1, &BadXMLError{}},
		{"listing of MaxXMLEntries", "/entries?list-type=2&n=3999", guard{maxXML: 1 << 20}, 0, 51 + 3999*33, nil},
		{"listing of more entries", "/entries?list-type=2&n=4000", guard{maxXML: 1 << 20}, 0, -1, &BadXMLError{}},
		{"object content is not parsed", "/nested?versionId=v", guard{maxXML: 1 << 20}, 0, 18 + 700 + 19, nil},
		{"an S3 listing", "/doc?list-type=2&doc=" + url.QueryEscape(listing), guard{maxXML: 1 << 20}, 0, len(listing), nil},
		{"HTML instead of a listing", "/doc?list-type=2&doc=" + url.QueryEscape("<html><body>portal</body></html>"), guard{maxXML: 1 << 20}, 0, -1, &BadXMLError{}},
		{"versions answered with a V2 listing", "/doc?versions=&doc=" + url.QueryEscape(listing), guard{maxXML: 1 << 20}, 0, -1, &BadXMLError{}},
		{"tricks in quotes, comments and self-closing tags", "/doc?versioning=&doc=" + url.QueryEscape(tricky), guard{maxXML: 1 << 20}, 0, len(tricky), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.g
			g.next = &http.Transport{Proxy: nil}
			cl := &http.Client{Transport: &g}
			start := time.Now()
			resp, err := cl.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var n int
			buf := make([]byte, 16<<10)
			for {
				if tt.slowRead > 0 {
					time.Sleep(tt.slowRead)
				}
				var k int
				k, err = resp.Body.Read(buf)
				n += k
				if err != nil {
					break
				}
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %s", time.Since(start))
			}
			switch want := tt.wantErr.(type) {
			case nil:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("read %d bytes, then %v; want EOF", n, err)
				}
			case *StallError:
				var se *StallError
				if !errors.As(err, &se) || !se.Timeout() {
					t.Fatalf("read %d bytes, then %v; want a stall", n, err)
				}
				t.Logf("%v", err)
			case *BadXMLError:
				var be *BadXMLError
				if !errors.As(err, &be) {
					t.Fatalf("read %d bytes, then %v; want %T", n, err, want)
				}
				t.Logf("%v", err)
			case *TooLargeError:
				var te *TooLargeError
				if !errors.As(err, &te) || te.Max != g.maxXML {
					t.Fatalf("read %d bytes, then %v; want %T", n, err, want)
				}
			}
			if tt.want >= 0 && n != tt.want {
				t.Errorf("read %d bytes, want %d", n, tt.want)
			}
		})
	}
}
