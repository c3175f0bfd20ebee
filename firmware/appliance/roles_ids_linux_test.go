package appliance

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/holdfast-appliance/holdfast/firmware/roles"
)

// TestNewStoreDirOwnership: the directory PID 1 makes for a new store is
// the worker's, searchable by its group and by no one else.
func TestNewStoreDirOwnership(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("needs root (chown, inode flags)")
	}
	dir := filepath.Join(t.TempDir(), "store")
	if err := newStoreDir(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != roles.WorkerUID || st.Gid != roles.WorkerUID || fi.Mode().Perm() != 0o750 {
		t.Fatalf("store dir %d:%d mode %o, want %d:%d 0750", st.Uid, st.Gid, fi.Mode().Perm(), roles.WorkerUID, roles.WorkerUID)
	}
}
