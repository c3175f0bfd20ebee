package control

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// FuzzServe feeds one hostile line to PID 1's end: it never panics, the
// handler sees only requests that validate and that the worker may send,
// and a request with an id is answered.
func FuzzServe(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"sign","body":{"snapshot":"` + snap + `"}}`,
		`{"op":"status","body":{"source":"mail","status":{"summary":"ok","took":-1}}}`,
		`{"op":"alert","body":{"kind":"attack","text":"x","snapshot":"../"}}`,
		`{"id":2,"op":"init","body":{"master":"AAAA"}}`,
		`{"id":3,"op":"sign","reply":true,"body":{}}`,
		`{"id":18446744073709551615,"op":"primary","body":{"disk":{"name":"a","serial":"","dir":"/x"}}}`,
		`{"id":4,"op":"sign","body":null}`,
		`[]`, `{}`, "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		h := func(ctx context.Context, req Request) (Reply, error) {
			if sp, ok := spec(req.Op()); !ok || sp.From != Worker {
				t.Errorf("handler got %s", req.Op())
			}
			if err := req.Validate(); err != nil {
				t.Errorf("handler got an invalid %s: %v", req.Op(), err)
			}
			if _, ok := req.(*SignRequest); ok {
				return &SignReply{Receipt: []byte("r")}, nil
			}
			return nil, nil
		}
		var out lockedBuf
		c := New(struct {
			io.Reader
			io.Writer
		}{strings.NewReader(line + "\n"), &out}, Options{Side: PID1, Handler: h})
		<-c.Done()
		for deadline := time.Now().Add(5 * time.Second); len(c.sem) > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("a handler still runs")
			}
		}
		// Every reply is one line of JSON.
		for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
			if l != "" && !json.Valid([]byte(l)) {
				t.Errorf("reply %q is not JSON", l)
			}
		}
	})
}
