package disks

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// MountEntry is one line of a mountinfo file.
type MountEntry struct {
	Dev     string // "major:minor"
	Target  string // mount point, octal escapes undone
	Options string // per-mount options ("rw,nosuid,...")
	FSType  string
	Source  string // octal escapes undone
}

// Mounts lists the mounts of a mountinfo file (normally
// /proc/self/mountinfo) in mount order.
func Mounts(path string) ([]MountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var out []MountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT TARGET OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, _ := strings.Cut(sc.Text(), " - ")
		fields, typ := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 {
			continue
		}
		m := MountEntry{Dev: fields[2], Target: unescapeMount(fields[4]), Options: fields[5]}
		if len(typ) > 0 {
			m.FSType = typ[0]
		}
		if len(typ) > 1 {
			m.Source = unescapeMount(typ[1])
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table %s: %w", path, err)
	}
	return out, nil
}

// MountedDevices maps "major:minor" to a mount point, from a mountinfo file
// (normally /proc/self/mountinfo). The USB writer (images/flash) and the
// disaster restore (services/restore/disk) refuse a device found here.
func MountedDevices(path string) (map[string]string, error) {
	ms, err := Mounts(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, e := range ms {
		if _, seen := m[e.Dev]; !seen {
			m[e.Dev] = e.Target
		}
	}
	return m, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
