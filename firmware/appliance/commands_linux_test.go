package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/services/restore/restoretest"
	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// TestListObjects: the console's ls streams a snapshot and reads every
// object back: each live object under the prefix once, with its SHA-256,
// size and quoted key; delete markers and other prefixes left out.
func TestListObjects(t *testing.T) {
	ctx := context.Background()
	dir := storetest.Dir(t)
	s, err := store.Init(ctx, dir, store.StaticKey(testMaster), store.InitOptions{PackSize: 4 << 20}, store.Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	objs := []restoretest.Object{
		{Key: "inbox/a", Data: []byte("one")},
		{Key: "inbox/\x1b[2Jb", Data: restoretest.RandBytes(1, 3<<20)},
		{Key: "sent/c", Data: []byte("three")},
	}
	id := restoretest.Commit(t, s, "mail", objs)
	line := func(o restoretest.Object) string {
		return fmt.Sprintf("%x %d %s\r\n", sha256.Sum256(o.Data), len(o.Data), strconv.Quote(o.Key))
	}
	for _, tc := range []struct {
		prefix string
		want   []restoretest.Object
	}{
		// restoretest.Commit adds DeletedKey's old version and its
		// delete marker: the version is listed, the marker is not.
		{"", append(objs[:3:3], restoretest.Object{Key: restoretest.DeletedKey, Data: []byte("old")})},
		{"inbox/", objs[:2]},
		{"nothing/", nil},
	} {
		t.Run(strconv.Quote(tc.prefix), func(t *testing.T) {
			var out bytes.Buffer
			if err := listObjects(ctx, s, id, tc.prefix, &out); err != nil {
				t.Fatal(err)
			}
			for _, o := range tc.want {
				if strings.Count(out.String(), line(o)) != 1 {
					t.Errorf("output lacks (or repeats) %q:\n%s", line(o), out.String())
				}
			}
			if want := fmt.Sprintf("%d object(s) read back\r\n", len(tc.want)); !strings.HasSuffix(out.String(), want) {
				t.Errorf("output does not end with %q:\n%s", want, out.String())
			}
			if strings.Contains(out.String(), "\x1b") {
				t.Errorf("a raw escape reached the console:\n%s", out.String())
			}
		})
	}
	if err := listObjects(ctx, s, "20990101T000000Z-00000000", "", &bytes.Buffer{}); err == nil {
		t.Error("ls of a snapshot that does not exist succeeded")
	}
}
