package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestCurrentRecord: in a sorted snapshot (a pull: S3 lists a key's
// versions newest first) a key's first record is its current one; in any
// other snapshot the last recorded is. WalkCurrent hands over one record a
// key, the current one (delete markers included: the caller skips them),
// and FindObject returns the same record.
func TestCurrentRecord(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, InitOptions{}, Options{})
	body := func(v string) Object {
		t.Helper()
		sn, err := s.Begin(ctx, BeginOptions{Source: "bodies"})
		if err != nil {
			t.Fatal(err)
		}
		o, err := sn.Put(ctx, ObjectInfo{Key: []byte("x")}, bytes.NewReader([]byte(v)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sn.Commit(ctx, CommitOptions{}); err != nil {
			t.Fatal(err)
		}
		return o
	}
	v1, v2, v3 := body("one"), body("two"), body("three")
	rec := func(key, version string, o Object, del bool) Object {
		o.Key, o.VersionID, o.DeleteMarker = []byte(key), version, del
		if del {
			o.Chunks, o.Size = nil, 0
		}
		return o
	}
	commit := func(sorted bool, objs []Object) string {
		t.Helper()
		sn, err := s.Begin(ctx, BeginOptions{Source: "mail", Sorted: sorted})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if err := sn.PutExisting(o); err != nil {
				t.Fatal(err)
			}
		}
		m, err := sn.Commit(ctx, CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	tests := []struct {
		name   string
		sorted bool
		objs   []Object
		want   map[string]string // key -> version of its current record ("" for none)
		gone   map[string]bool   // keys whose current record is a delete marker
	}{
		{"pull: versions newest first", true,
			[]Object{rec("a", "a3", v3, false), rec("a", "a2", v2, false), rec("a", "a1", v1, false),
				rec("b", "b2", v2, true), rec("b", "b1", v1, false), rec("c", "c1", v1, false)},
			map[string]string{"a": "a3", "b": "b2", "c": "c1"}, map[string]bool{"b": true}},
		{"put or older pull: the last recorded", false,
			[]Object{rec("a", "a1", v1, false), rec("c", "c1", v1, false), rec("a", "a2", v2, false),
				rec("b", "b1", v1, false), rec("b", "b2", v2, true)},
			map[string]string{"a": "a2", "b": "b2", "c": "c1"}, map[string]bool{"b": true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := commit(tc.sorted, tc.objs)
			got := map[string]string{}
			_, err := s.WalkCurrent(id, nil, func(o Object) error {
				if _, dup := got[string(o.Key)]; dup {
					t.Errorf("key %q handed over twice", o.Key)
				}
				got[string(o.Key)] = o.VersionID
				if o.DeleteMarker != tc.gone[string(o.Key)] {
					t.Errorf("key %q: delete marker %v", o.Key, o.DeleteMarker)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("WalkCurrent: key %q current %q, want %q", k, got[k], v)
				}
				_, o, err := s.FindObject(id, []byte(k))
				if err != nil || o.VersionID != v {
					t.Errorf("FindObject(%q): %q, %v; want %q", k, o.VersionID, err, v)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("WalkCurrent handed over %v", got)
			}
			only := map[string]string{}
			if _, err := s.WalkCurrent(id, func(k []byte) bool { return string(k) == "a" }, func(o Object) error {
				only[string(o.Key)] = o.VersionID
				return nil
			}); err != nil || len(only) != 1 || only["a"] != tc.want["a"] {
				t.Errorf("WalkCurrent of key a: %v, %v", only, err)
			}
			for _, k := range []string{"0", "aa", "d"} {
				if _, _, err := s.FindObject(id, []byte(k)); !errors.Is(err, ErrNoObject) {
					t.Errorf("FindObject(%q): %v, want ErrNoObject", k, err)
				}
			}
		})
	}
}
