package alert

import "testing"

func TestDiskUsage(t *testing.T) {
	used, total, err := DiskUsage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if total == 0 || used > total {
		t.Errorf("DiskUsage = %d used of %d", used, total)
	}
	if _, _, err := DiskUsage("/nonexistent/holdfast"); err == nil {
		t.Error("DiskUsage of a missing path succeeded")
	}
}
