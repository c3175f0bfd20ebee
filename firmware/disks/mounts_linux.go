package disks

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// MountedDevices maps "major:minor" to a mount point, from a mountinfo file
// (normally /proc/self/mountinfo). The USB writer (images/flash) and the
// disaster restore (services/restore/disk) refuse a device found here.
func MountedDevices(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if _, seen := m[fields[2]]; !seen {
			m[fields[2]] = fields[4]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", path, err)
	}
	return m, nil
}
