package export

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// fakeChunks serves chunks from memory; a chunk mapped to nil fails as a
// damaged chunk does.
type fakeChunks struct {
	data  map[store.ChunkID][]byte
	reads *int
}

func (f fakeChunks) Read(id store.ChunkID) ([]byte, error) {
	*f.reads++
	d, ok := f.data[id]
	if !ok || d == nil {
		return nil, fmt.Errorf("chunk %s: %w", id, store.ErrCorrupt)
	}
	return d, nil
}

func (fakeChunks) Close() {}

// TestStreamFailures sends objects whose chunks fail or do not add up to
// their size: the client gets an error status, or a body cut short, and
// never a complete body that is wrong.
func TestStreamFailures(t *testing.T) {
	id := func(i byte) store.ChunkID { return store.ChunkID{i} }
	good := map[store.ChunkID][]byte{id(1): bytes.Repeat([]byte{1}, 1000), id(2): bytes.Repeat([]byte{2}, 1000), id(3): bytes.Repeat([]byte{3}, 500)}
	with := func(extra map[store.ChunkID][]byte) map[store.ChunkID][]byte {
		m := map[store.ChunkID][]byte{}
		for k, v := range good {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	whole := append(append(bytes.Clone(good[id(1)]), good[id(2)]...), good[id(3)]...)
	tests := []struct {
		name       string
		chunks     map[store.ChunkID][]byte
		size       int64
		rng        string
		wantStatus int
		wantBody   []byte // nil: the body must be cut short
	}{
		{"whole", good, 2500, "", 200, whole},
		{"range inside chunk 2", good, 2500, "bytes=1100-1199", 206, whole[1100:1200]},
		{"range across chunks", good, 2500, "bytes=900-2099", 206, whole[900:2100]},
		{"first chunk damaged", with(map[store.ChunkID][]byte{id(1): nil}), 2500, "", 500, []byte("InternalError")},
		{"second chunk damaged", with(map[store.ChunkID][]byte{id(2): nil}), 2500, "", 200, nil},
		{"last chunk damaged", with(map[store.ChunkID][]byte{id(3): nil}), 2500, "", 200, nil},
		{"chunks hold less than the size", good, 2600, "", 200, nil},
		{"chunks hold more than the size", good, 2400, "", 200, nil},
		{"range past what the chunks hold", good, 2600, "bytes=2400-2599", 206, nil},
		{"range before a damaged chunk", with(map[store.ChunkID][]byte{id(3): nil}), 2500, "bytes=0-1999", 206, whole[:2000]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := 0
			s := &Server{
				log:     hclog.NewNullLogger(),
				streams: make(chan struct{}, 1),
				sizes:   &chunkSizes{max: 100},
				chunks:  func(*store.Store) chunkSource { return fakeChunks{data: tt.chunks, reads: &reads} },
			}
			o := &store.Object{Key: []byte("k"), Size: tt.size, Chunks: []store.ChunkID{id(1), id(2), id(3)}}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				req := &request{w: &statusWriter{ResponseWriter: w}, r: r}
				start, end, partial, serr := parseRange(r.Header.Get("Range"), o.Size)
				if serr != nil {
					t.Errorf("range: %v", serr)
					return
				}
				status := http.StatusOK
				if partial {
					status = http.StatusPartialContent
				}
				w.Header().Set("Content-Length", strconv.FormatInt(end-start+1, 10))
				if serr := s.stream(req, nil, o, start, end, status); serr != nil {
					s.writeError(req, serr)
				}
				if req.abort {
					panic(http.ErrAbortHandler)
				}
			}))
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL, nil)
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			switch {
			case tt.wantBody == nil:
				if rerr == nil || !errors.Is(rerr, io.ErrUnexpectedEOF) {
					t.Fatalf("body of %d bytes read whole (%v); want it cut short", len(body), rerr)
				}
			case tt.wantStatus >= 400:
				if !bytes.Contains(body, tt.wantBody) {
					t.Errorf("body %q", body)
				}
			default:
				if rerr != nil || !bytes.Equal(body, tt.wantBody) {
					t.Errorf("body of %d bytes (%v), want %d", len(body), rerr, len(tt.wantBody))
				}
			}
		})
	}
}

// TestRangeSkipsKnownChunks: once chunk sizes are known, a Range GET deep
// into an object reads only the chunks it sends.
func TestRangeSkipsKnownChunks(t *testing.T) {
	reads := 0
	data := map[store.ChunkID][]byte{}
	var ids []store.ChunkID
	for i := byte(0); i < 10; i++ {
		id := store.ChunkID{i + 1}
		data[id] = bytes.Repeat([]byte{i}, 100)
		ids = append(ids, id)
	}
	s := &Server{log: hclog.NewNullLogger(), streams: make(chan struct{}, 1), sizes: &chunkSizes{max: 100},
		chunks: func(*store.Store) chunkSource { return fakeChunks{data: data, reads: &reads} }}
	o := &store.Object{Key: []byte("k"), Size: 1000, Chunks: ids}
	get := func(start, end int64) []byte {
		rec := httptest.NewRecorder()
		req := &request{w: &statusWriter{ResponseWriter: rec}, r: httptest.NewRequest("GET", "/", nil)}
		if serr := s.stream(req, nil, o, start, end, 206); serr != nil || req.abort {
			t.Fatalf("stream %d-%d: %v abort %v", start, end, serr, req.abort)
		}
		return rec.Body.Bytes()
	}
	if got := get(950, 999); !bytes.Equal(got, bytes.Repeat([]byte{9}, 50)) || reads != 10 {
		t.Fatalf("first range: %d bytes, %d chunk reads (all 10 before the sizes are known)", len(got), reads)
	}
	reads = 0
	if got := get(850, 999); !bytes.Equal(got, append(bytes.Repeat([]byte{8}, 50), bytes.Repeat([]byte{9}, 100)...)) || reads != 2 {
		t.Fatalf("second range: %d bytes, %d chunk reads, want 2", len(got), reads)
	}
}
