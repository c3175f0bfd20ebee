package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestErrorsBounded: a source whose every object fails cannot flood the log
// or the snapshot record: both hold the first maxRecordedErrors errors and
// a count of the rest.
func TestErrorsBounded(t *testing.T) {
	const n = maxRecordedErrors + 500
	s := newStore(t)
	b := &memBucket{}
	for i := 0; i < n; i++ {
		o := b.put([]byte(fmt.Sprintf("k%05d", i)), []byte("x"))
		o.listSize = 1 << 40 // over max_object_size
	}
	src := testSource("flood", "mem", "mem")
	src.Limits.MaxObjectSize = 1 << 30
	out := &lockedBuffer{}
	p := &Puller{Store: s, Log: hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: out})}
	res, err := p.pull(context.Background(), src, b)
	if !errors.Is(err, ErrIncomplete) || res == nil {
		t.Fatalf("pull: %v", err)
	}
	lines := strings.Count(out.b.String(), "\n")
	if lines > maxRecordedErrors+2 {
		t.Errorf("%d log lines for %d errors, want at most %d", lines, n, maxRecordedErrors+2)
	}
	if !strings.Contains(out.b.String(), "500 further errors not recorded") {
		t.Errorf("the log does not count the errors left out")
	}
	if len(res.Errors) != maxRecordedErrors+1 || res.Errors[maxRecordedErrors] != "500 further errors not recorded" {
		t.Errorf("%d errors recorded, the last %q", len(res.Errors), res.Errors[len(res.Errors)-1])
	}
}
