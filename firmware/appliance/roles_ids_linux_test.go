package appliance

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestRoleIdentities: every role has a uid and gid of its own (none shares
// one with another role, root or nobody); only the sealer and the export
// are in the worker's group, the store's.
func TestRoleIdentities(t *testing.T) {
	tests := []struct {
		role      string
		uid       int
		storeRead bool // member of the worker's group
	}{
		{"worker", WorkerUID, false}, // the owner: its own gid is the group
		{"sealer", SealerUID, true},
		{"export", ExportUID, true},
		{"dhcp", DHCPUID, false},
	}
	seen := map[int]string{0: "root", 65534: "nobody"}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			id := roleIDs(tt.role)
			if id.UID != tt.uid || id.GID != tt.uid {
				t.Fatalf("%s runs as %d:%d, want %d:%d", tt.role, id.UID, id.GID, tt.uid, tt.uid)
			}
			if other, dup := seen[id.UID]; dup {
				t.Fatalf("%s shares uid %d with %s", tt.role, id.UID, other)
			}
			seen[id.UID] = tt.role
			if got := slices.Contains(id.Groups, WorkerUID); got != tt.storeRead || len(id.Groups) > 1 {
				t.Fatalf("%s groups %v: want the store's group %v and nothing else", tt.role, id.Groups, tt.storeRead)
			}
		})
	}
	if id := roleIDs("no such role"); id.UID != 65534 || len(id.Groups) != 0 {
		t.Fatalf("an unknown role gets %+v", id)
	}
}

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
	if st.Uid != WorkerUID || st.Gid != WorkerUID || fi.Mode().Perm() != 0o750 {
		t.Fatalf("store dir %d:%d mode %o, want %d:%d 0750", st.Uid, st.Gid, fi.Mode().Perm(), WorkerUID, WorkerUID)
	}
}
