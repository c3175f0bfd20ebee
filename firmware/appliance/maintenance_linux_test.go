package appliance

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/services/store"
	"github.com/holdfast-appliance/holdfast/services/store/storetest"
)

// The maintenance window removes what the worker planted where it writes
// freely, prunes anyway, and raises an attack alert naming each entry.
func TestMaintenanceReportsForeignEntries(t *testing.T) {
	dir := storetest.Dir(t)
	key := store.StaticKey(bytes.Repeat([]byte{9}, 32))
	st, err := store.Init(t.Context(), dir, key, store.InitOptions{}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const id = "20250101T000000Z-0badf00d"
	planted := []string{"wip/" + id + ".journal", "snapshots/" + id + ".snap"}
	if err := unix.Mkfifo(filepath.Join(dir, planted[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, planted[1])); err != nil {
		t.Fatal(err)
	}
	a := &appliance{log: hclog.NewNullLogger()}
	if !a.cleanAndPrune(t.Context(), st, time.Now()) {
		t.Fatalf("prune did not run: %v", a.alerts)
	}
	all := strings.Join(a.alerts, "\n")
	for _, p := range planted {
		if !strings.Contains(all, p) {
			t.Errorf("no alert names %s: %s", p, all)
		}
	}
	if !strings.Contains(all, "attack: foreign entries") {
		t.Errorf("no attack alert: %s", all)
	}
	if _, err := os.Lstat(filepath.Join(dir, planted[0])); err == nil {
		t.Errorf("%s is still there", planted[0])
	}
}
