package appliance

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
)

// Listening sockets and process powers, for the console's "sockets" and
// "processes" commands (and the lockdown tests that read them).

// listeningSockets reads /proc/net and returns one line per listening TCP
// socket, bound UDP socket and listening unix socket (abstract ones
// included) in this network namespace.
func listeningSockets() ([]string, error) {
	var out []string
	for _, f := range []struct {
		file, proto string
		listen      func(state string) bool
	}{
		{"/proc/net/tcp", "tcp", func(st string) bool { return st == "0A" }},
		{"/proc/net/tcp6", "tcp6", func(st string) bool { return st == "0A" }},
		{"/proc/net/udp", "udp", func(string) bool { return true }},
		{"/proc/net/udp6", "udp6", func(string) bool { return true }},
		{"/proc/net/raw", "raw", func(string) bool { return true }},
		{"/proc/net/raw6", "raw6", func(string) bool { return true }},
	} {
		lines, err := readTable(f.file)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		for _, l := range lines {
			fs := strings.Fields(l)
			if len(fs) > 3 && f.listen(fs[3]) {
				out = append(out, fmt.Sprintf("%s %s state %s", f.proto, fs[1], fs[3]))
			}
		}
	}
	lines, err := readTable("/proc/net/unix")
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		// Num RefCount Protocol Flags Type St Inode Path
		fs := strings.Fields(l)
		if len(fs) < 6 {
			continue
		}
		flags, _ := strconv.ParseUint(fs[3], 16, 32)
		if flags&0x10000 != 0 { // __SO_ACCEPTCON: listening
			path := ""
			if len(fs) > 7 {
				path = fs[7]
			}
			out = append(out, "unix listening "+path)
		}
	}
	sort.Strings(out)
	return out, nil
}

func readTable(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for first := true; s.Scan(); first = false {
		if !first {
			lines = append(lines, s.Text())
		}
	}
	return lines, s.Err()
}

// processes writes one line per process: pid, name, uid, gid, supplementary
// groups ("-" for none), capability sets (effective, bounding) and
// no_new_privs.
func processes(out io.Writer) error {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return err
	}
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(dirs[i]))
		b, _ := strconv.Atoi(filepath.Base(dirs[j]))
		return a < b
	})
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		st, err := readStatus(filepath.Join(d, "status"))
		if err != nil || st["Uid"] == "" {
			continue // gone, or a kernel thread
		}
		// Kernel threads are kthreadd (pid 2) and its children. (Their
		// exe link cannot tell: the worker's and the sealer's are closed
		// to PID 1 too, since they are not dumpable.)
		if pid == 2 || st["PPid"] == "2" {
			continue
		}
		s, err := caps.Read(pid)
		if err != nil {
			continue
		}
		uid, gid := strings.Fields(st["Uid"]), strings.Fields(st["Gid"])
		groups := strings.Join(strings.Fields(st["Groups"]), ",")
		if groups == "" {
			groups = "-"
		}
		if len(gid) == 0 {
			gid = []string{"?"}
		}
		name := st["Name"]
		if cl, err := os.ReadFile(filepath.Join(d, "cmdline")); err == nil && len(cl) > 0 {
			name, _, _ = strings.Cut(string(cl), "\x00")
		}
		fmt.Fprintf(out, "pid=%d name=%s uid=%s gid=%s groups=%s cap_eff=%016x cap_bnd=%016x no_new_privs=%s\r\n",
			pid, strconv.Quote(name), uid[0], gid[0], groups, uint64(s.Effective), uint64(s.Bounding), st["NoNewPrivs"])
	}
	return nil
}

func readStatus(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, s.Err()
}
