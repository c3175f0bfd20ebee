package roles

import (
	"slices"
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
			id := IDs(tt.role)
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
	if id := IDs("no such role"); id.UID != 65534 || len(id.Groups) != 0 {
		t.Fatalf("an unknown role gets %+v", id)
	}
}
