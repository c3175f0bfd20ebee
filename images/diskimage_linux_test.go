package images

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Helpers for tests that damage a data disk between boots: they read and
// change the ext4 file system in a data disk's qcow2 image (the guest puts
// ext4 on the whole disk) with the VM stopped. Each works on a raw copy of
// the image made with qemu-img convert, with ext4's journal replayed into
// the copy (VM.Stop and Kill end QEMU without the guest unmounting, and
// what the guest committed last, a new pack's inode and directory entry
// say, may be in the journal only), read with debugfs; changes go back
// into the qcow2 with qemu-io, into data blocks only, which the journal
// does not hold (data=ordered), so the guest's own replay at its next
// mount leaves them. qemu-img and qemu-io refuse an image a running QEMU
// holds locked.

// diskTools are the programs the helpers run.
var diskTools = []string{"qemu-img", "qemu-io", "debugfs", "dumpe2fs", "e2fsck"}

// diskTool is the path of a program: in PATH, or in /usr/sbin or /sbin
// where e2fsprogs lives ("" when neither has it).
func diskTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// runDiskTool runs a program and returns its standard output, failing the
// test when it fails.
func runDiskTool(ctx context.Context, t *testing.T, name string, args ...string) []byte {
	t.Helper()
	p := diskTool(name)
	if p == "" {
		t.Fatalf("%s is not installed: run make setup", name)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, p, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// rawImage converts qcow2 to a (sparse) raw file in a new temporary
// directory, replays the ext4 journal there and returns the file's path.
func rawImage(ctx context.Context, t *testing.T, qcow2 string) string {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "disk.raw")
	runDiskTool(ctx, t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow2, raw)
	fsck := diskTool("e2fsck")
	if fsck == "" {
		t.Fatal("e2fsck is not installed (e2fsprogs): run make setup")
	}
	// Exit status 1: the file system was changed (the journal replayed).
	out, err := exec.CommandContext(ctx, fsck, "-E", "journal_only", "-p", raw).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
		t.Fatalf("e2fsck -E journal_only %s (from %s): %v: %s", raw, qcow2, err, out)
	}
	return raw
}

// debugfs runs one debugfs request on a raw image (read-only) and returns
// its standard output. debugfs exits 0 whatever happens and reports
// errors on standard error after its banner, so anything there but the
// banner fails the test.
func debugfs(ctx context.Context, t *testing.T, raw, request string) []byte {
	t.Helper()
	p := diskTool("debugfs")
	if p == "" {
		t.Fatal("debugfs is not installed (e2fsprogs): run make setup")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, p, "-R", request, raw)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var msgs []string
	for line := range strings.Lines(stderr.String()) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "debugfs ") {
			msgs = append(msgs, line)
		}
	}
	if err != nil || len(msgs) > 0 {
		t.Fatalf("debugfs -R %q %s: %v: %s", request, raw, err, strings.Join(msgs, "; "))
	}
	return stdout.Bytes()
}

// debugfsQuote quotes a path for a debugfs request.
func debugfsQuote(p string) string {
	if strings.ContainsAny(p, "\"\n") {
		panic(fmt.Sprintf("path %q cannot be quoted for debugfs", p))
	}
	return `"` + p + `"`
}

// imageEntry is one entry of a directory in an ext4 image.
type imageEntry struct {
	name string
	mode uint32
	size int64
}

// listImageDir lists the directory p of the ext4 file system in raw,
// without "." and "..".
func listImageDir(ctx context.Context, t *testing.T, raw, p string) []imageEntry {
	t.Helper()
	var out []imageEntry
	for line := range strings.Lines(string(debugfs(ctx, t, raw, "ls -p "+debugfsQuote(p)))) {
		// /inode/mode/uid/gid/name/size/ (size empty for directories)
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "/")
		if len(f) != 8 || f[0] != "" || f[7] != "" {
			t.Fatalf("debugfs ls -p %s: unexpected line %q", p, line)
		}
		if f[5] == "." || f[5] == ".." {
			continue
		}
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil {
			t.Fatalf("debugfs ls -p %s: mode in %q: %v", p, line, err)
		}
		e := imageEntry{name: f[5], mode: uint32(mode)}
		if f[6] != "" {
			if e.size, err = strconv.ParseInt(f[6], 10, 64); err != nil {
				t.Fatalf("debugfs ls -p %s: size in %q: %v", p, line, err)
			}
		}
		out = append(out, e)
	}
	return out
}

// fileInRaw returns the content of the file p of the ext4 file system in
// raw.
func fileInRaw(ctx context.Context, t *testing.T, raw, p string) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "file")
	debugfs(ctx, t, raw, "dump "+debugfsQuote(p)+" "+debugfsQuote(dst))
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatalf("%s in %s: %v", p, raw, err)
	}
	return b
}

// fileInImage returns the content of the file p (an absolute path such as
// "/store/packs/ab/abcd...") of the ext4 file system in a data disk's
// qcow2 image. The VM must be stopped.
func fileInImage(ctx context.Context, t *testing.T, qcow2, p string) []byte {
	t.Helper()
	return fileInRaw(ctx, t, rawImage(ctx, t, qcow2), p)
}

// ext4BlockSize is the block size of the ext4 file system in raw.
func ext4BlockSize(ctx context.Context, t *testing.T, raw string) int64 {
	t.Helper()
	for line := range strings.Lines(string(runDiskTool(ctx, t, "dumpe2fs", "-h", raw))) {
		if v, ok := strings.CutPrefix(line, "Block size:"); ok {
			bs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || bs < 1024 {
				t.Fatalf("dumpe2fs -h %s: block size %q", raw, v)
			}
			return bs
		}
	}
	t.Fatalf("dumpe2fs -h %s: no block size", raw)
	return 0
}

// corruptFileInImage damages one file of the ext4 file system in a data
// disk's qcow2 image, with the VM stopped: the largest regular file under
// the directory dir (an absolute path such as "/store/packs"; searched
// with its subdirectories, ties broken by path), of which it inverts
// (XOR 0xff) the 64 bytes in the middle of the file's part of its first
// data block, written straight into the qcow2 at the block's place on the
// disk (ext4 is on the whole disk), so that the file system's metadata
// stays valid and only the file's content changes. It checks on a fresh
// copy of the image that exactly those 64 bytes of the file changed and
// returns the file's path relative to dir's parent (the store), e.g.
// "packs/ab/abcdef...".
func corruptFileInImage(ctx context.Context, t *testing.T, qcow2, dir string) (rel string) {
	t.Helper()
	const n = 64
	dir = path.Clean(dir)
	if !path.IsAbs(dir) || dir == "/" {
		t.Fatalf("corruptFileInImage: dir %q: want an absolute path below /", dir)
	}
	raw := rawImage(ctx, t, qcow2)

	var file string
	size := int64(-1)
	for todo := []string{dir}; len(todo) > 0; todo = todo[1:] {
		for _, e := range listImageDir(ctx, t, raw, todo[0]) {
			p := path.Join(todo[0], e.name)
			switch e.mode & 0o170000 {
			case 0o040000:
				todo = append(todo, p)
			case 0o100000:
				if e.size > size || e.size == size && p < file {
					file, size = p, e.size
				}
			}
		}
	}
	if file == "" {
		t.Fatalf("corruptFileInImage: no regular file under %s in %s", dir, qcow2)
	}
	bs := ext4BlockSize(ctx, t, raw)
	inBlock := min(size, bs)
	if inBlock < n {
		t.Fatalf("corruptFileInImage: the largest file under %s, %s, has %d bytes, fewer than %d", dir, file, size, n)
	}
	blk, err := strconv.ParseInt(strings.TrimSpace(string(debugfs(ctx, t, raw, "bmap "+debugfsQuote(file)+" 0"))), 10, 64)
	if err != nil || blk <= 0 {
		t.Fatalf("corruptFileInImage: %s: no first data block (bmap: %v %d)", file, err, blk)
	}
	off := inBlock/2 - n/2 // in the file and in its first block
	disk := blk*bs + off   // on the disk
	before := fileInRaw(ctx, t, raw, file)

	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	patch := make([]byte, n)
	_, err = f.ReadAt(patch, disk)
	f.Close()
	if err != nil {
		t.Fatalf("corruptFileInImage: read %s at %d: %v", raw, disk, err)
	}
	if !bytes.Equal(patch, before[off:off+n]) {
		t.Fatalf("corruptFileInImage: %s: the disk at %d (block %d of %d bytes) does not hold the file's bytes %d-%d", file, disk, blk, bs, off, off+n)
	}
	for i := range patch {
		patch[i] ^= 0xff
	}
	pf := filepath.Join(t.TempDir(), "patch")
	if err := os.WriteFile(pf, patch, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runDiskTool(ctx, t, "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -s %s %d %d", pf, disk, n), qcow2)
	if !bytes.Contains(out, fmt.Appendf(nil, "wrote %d/%d bytes at offset %d", n, n, disk)) {
		t.Fatalf("corruptFileInImage: qemu-io write into %s: %s", qcow2, out)
	}

	after := fileInImage(ctx, t, qcow2, file)
	if err := flippedOnly(before, after, off, n); err != nil {
		t.Fatalf("corruptFileInImage: %s in %s after the write: %v", file, qcow2, err)
	}
	rel, err = filepath.Rel(path.Dir(dir), file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("corrupted %s in %s: %d bytes at %d of %d (disk offset %d)", file, qcow2, n, off, size, disk)
	return rel
}

// flippedOnly reports how after differs from before unless it is before
// with exactly the n bytes at off inverted.
func flippedOnly(before, after []byte, off, n int64) error {
	if len(after) != len(before) {
		return fmt.Errorf("%d bytes, was %d", len(after), len(before))
	}
	for i := range before {
		want := before[i]
		if int64(i) >= off && int64(i) < off+n {
			want ^= 0xff
		}
		if after[i] != want {
			return fmt.Errorf("byte %d is %#02x, want %#02x (was %#02x; only %d-%d should be inverted)", i, after[i], want, before[i], off, off+n)
		}
	}
	return nil
}

func TestCorruptFileInImage(t *testing.T) {
	for _, bin := range append([]string{"mke2fs"}, diskTools...) {
		if diskTool(bin) == "" {
			t.Skipf("%s is not installed", bin)
		}
	}
	ctx := t.Context()
	dir := t.TempDir()
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	files := map[string]int{
		"store/packs/ab/ab01cd": 300000, // the largest under /store/packs
		"store/packs/cd/cd02ef": 200000,
		"store/packs/cd/cd03":   10,
		"store/snapshots/s1":    400000, // larger, but not under packs
	}
	want := map[string][]byte{}
	for p, size := range files {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		full := filepath.Join(dir, "root", p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
		want["/"+p] = b
	}
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 32<<20); err != nil {
		t.Fatal(err)
	}
	runDiskTool(ctx, t, "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "holdfast-data", "-d", filepath.Join(dir, "root"), raw)
	qcow2 := filepath.Join(dir, "data0.qcow2")
	runDiskTool(ctx, t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2)
	if err := os.Remove(raw); err != nil {
		t.Fatal(err)
	}
	virtualSize := func() int64 {
		var info struct {
			VirtualSize int64 `json:"virtual-size"`
		}
		out := runDiskTool(ctx, t, "qemu-img", "info", "--output=json", qcow2)
		if err := json.Unmarshal(out, &info); err != nil {
			t.Fatalf("qemu-img info: %v: %s", err, out)
		}
		return info.VirtualSize
	}
	sizeBefore := virtualSize()

	rel := corruptFileInImage(ctx, t, qcow2, "/store/packs")
	if rel != "packs/ab/ab01cd" {
		t.Fatalf("corrupted %q, want packs/ab/ab01cd", rel)
	}
	got := fileInImage(ctx, t, qcow2, "/store/"+rel)
	var diff []int
	for i := range got {
		if got[i] != want["/store/"+rel][i] {
			diff = append(diff, i)
		}
	}
	// The first block is 4096 bytes: the middle 64 are 2016-2079.
	if len(got) != len(want["/store/"+rel]) || len(diff) != 64 || diff[0] != 2016 || diff[63] != 2079 {
		t.Fatalf("%d bytes, %d differ (%v...)", len(got), len(diff), diff[:min(len(diff), 3)])
	}
	for p, b := range want {
		if p == "/store/"+rel {
			continue
		}
		if !bytes.Equal(fileInImage(ctx, t, qcow2, p), b) {
			t.Errorf("%s changed", p)
		}
	}
	if s := virtualSize(); s != sizeBefore {
		t.Errorf("virtual size %d, was %d", s, sizeBefore)
	}
	// The file system's metadata is untouched.
	if fsck := diskTool("e2fsck"); fsck != "" {
		if out, err := exec.CommandContext(ctx, fsck, "-fn", rawImage(ctx, t, qcow2)).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn: %v\n%s", err, out)
		}
	}
}

// TestCorruptFileInImageJournal has the kernel write a file into an ext4
// image and commit it to the journal only, as a guest stopped without
// unmounting leaves it; corruptFileInImage must find the file, and the
// kernel, replaying the journal at mount, must read it with exactly the
// 64 bytes inverted. It needs root and loop devices.
func TestCorruptFileInImageJournal(t *testing.T) {
	for _, bin := range append([]string{"mke2fs", "mount", "umount"}, diskTools...) {
		if diskTool(bin) == "" {
			t.Skipf("%s is not installed", bin)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a loop device needs root")
	}
	ctx := t.Context()
	dir := t.TempDir()
	raw, mnt := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(raw, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 32<<20); err != nil {
		t.Fatal(err)
	}
	runDiskTool(ctx, t, "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "holdfast-data", raw)
	mount := func() bool {
		t.Helper()
		if out, err := exec.CommandContext(ctx, diskTool("mount"), "-o", "loop", raw, mnt).CombinedOutput(); err != nil {
			t.Logf("mount -o loop: %v: %s", err, out)
			return false
		}
		t.Cleanup(func() { _ = exec.Command(diskTool("umount"), mnt).Run() })
		return true
	}
	umount := func() { runDiskTool(context.Background(), t, "umount", mnt) }
	if !mount() {
		t.Skip("cannot mount a loop device here")
	}
	content := make([]byte, 100000)
	rng := rand.New(rand.NewChaCha8([32]byte{2}))
	for i := range content {
		content[i] = byte(rng.Uint32())
	}
	// fsync the file and its directories: a journal commit, with the
	// metadata left dirty in the kernel's buffers.
	pack := filepath.Join(mnt, "store/packs/ef/ef04")
	if err := os.MkdirAll(filepath.Dir(pack), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pack, content, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{pack, filepath.Dir(pack), filepath.Dir(filepath.Dir(pack))} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	qcow2 := filepath.Join(dir, "data0.qcow2")
	runDiskTool(ctx, t, "qemu-img", "convert", "-U", "-f", "raw", "-O", "qcow2", raw, qcow2)
	umount()
	// Without the journal the file is not there yet (unless the kernel
	// happened to write its metadata back already).
	plain := filepath.Join(dir, "plain.raw")
	runDiskTool(ctx, t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow2, plain)
	if !bytes.Contains(runDiskTool(ctx, t, "dumpe2fs", "-h", plain), []byte("needs_recovery")) {
		t.Log("the copy's journal needs no recovery; the test proves less")
	}
	if out, _ := exec.CommandContext(ctx, diskTool("debugfs"), "-R", "ls -p /store/packs/ef", plain).CombinedOutput(); bytes.Contains(out, []byte("/ef04/")) {
		t.Log("the file is there without the journal; the test proves less")
	}

	rel := corruptFileInImage(ctx, t, qcow2, "/store/packs")
	if rel != "packs/ef/ef04" {
		t.Fatalf("corrupted %q, want packs/ef/ef04", rel)
	}
	// The kernel's view of the damaged image, with its own journal
	// replay.
	runDiskTool(ctx, t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow2, raw)
	if !mount() {
		t.Fatal("mount of the damaged image failed")
	}
	got, err := os.ReadFile(pack)
	umount()
	if err != nil {
		t.Fatal(err)
	}
	if err := flippedOnly(content, got, 2016, 64); err != nil {
		t.Fatalf("the kernel reads %s: %v", pack, err)
	}
}
