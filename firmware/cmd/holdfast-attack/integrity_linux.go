package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// entry is the recorded state of one store path.
type entry struct {
	Type     string            `json:"type"` // file, dir, symlink, other, missing, error
	Mode     uint32            `json:"mode,omitempty"`
	UID      uint32            `json:"uid,omitempty"`
	GID      uint32            `json:"gid,omitempty"`
	Size     int64             `json:"size,omitempty"`
	SHA256   string            `json:"sha256,omitempty"`
	Flags    uint32            `json:"flags,omitempty"`
	FlagsErr string            `json:"flags_err,omitempty"`
	Xattrs   map[string][]byte `json:"xattrs,omitempty"`
	Link     string            `json:"link,omitempty"`
	Err      string            `json:"err,omitempty"`
}

// change is one difference found by the integrity check.
type change struct{ path, what string }

// excluded are the top-level store names whose contents the store itself
// rewrites or removes (store-format.md, layout).
var excluded = map[string]bool{"tmp": true, "wip": true, "index": true, "state": true, "lock": true}

// xattrPrefix selects the store's retention xattrs.
const xattrPrefix = "user.holdfast."

// stateOf records path without following a symlink.
func stateOf(p string) entry {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return entry{Type: "missing"}
		}
		return entry{Type: "error", Err: "lstat: " + err.Error()}
	}
	e := entry{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type, e.Size = "file", st.Size
		e.inspect(p, unix.O_RDONLY, true)
	case unix.S_IFDIR:
		e.Type = "dir"
		e.inspect(p, unix.O_RDONLY|unix.O_DIRECTORY, false)
	case unix.S_IFLNK:
		e.Type = "symlink"
		e.Link, _ = os.Readlink(p)
		return e
	default:
		e.Type = "other"
		return e
	}
	e.Xattrs, e.Err = holdfastXattrs(p, e.Err)
	return e
}

// inspect opens p and records its inode flags and, for a file, the SHA-256
// of its content.
func (e *entry) inspect(p string, flags int, hash bool) {
	fd, err := unix.Open(p, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		e.Err = "open: " + err.Error()
		return
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	if v, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS); err != nil {
		e.FlagsErr = err.Error()
	} else {
		e.Flags = v
	}
	if hash {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			e.Err = "read: " + err.Error()
			return
		}
		e.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
}

// holdfastXattrs reads the user.holdfast.* xattrs of p; a read error is
// appended to prevErr.
func holdfastXattrs(p, prevErr string) (map[string][]byte, string) {
	addErr := func(s string) string {
		if prevErr == "" {
			return s
		}
		return prevErr + "; " + s
	}
	n, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || n == 0 && err == nil {
		return nil, prevErr
	}
	if err != nil {
		return nil, addErr("listxattr: " + err.Error())
	}
	buf := make([]byte, n)
	if n, err = unix.Llistxattr(p, buf); err != nil {
		return nil, addErr("listxattr: " + err.Error())
	}
	var out map[string][]byte
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, xattrPrefix) {
			continue
		}
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			prevErr = addErr("getxattr " + name + ": " + err.Error())
			continue
		}
		if out == nil {
			out = map[string][]byte{}
		}
		out[name] = v[:m]
	}
	return out, prevErr
}

// walkStore records every path of the store at root except the excluded
// top-level names. It fails when root itself cannot be read.
func walkStore(root string) (map[string]entry, error) {
	m := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		rel := relOf(root, p)
		if err != nil {
			if rel == "." {
				return err
			}
			e, ok := m[rel]
			if !ok {
				e = stateOf(p)
			}
			if e.Err != "" {
				e.Err += "; "
			}
			e.Err += "walk: " + err.Error()
			m[rel] = e
			return nil
		}
		if rel != "." && excluded[strings.SplitN(rel, "/", 2)[0]] {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		m[rel] = stateOf(p)
		return nil
	})
	if err != nil {
		return m, fmt.Errorf("integrity walk of %s: %w", root, err)
	}
	return m, nil
}

// listStore lists the store's paths without reading them (owner children
// use it to find the same targets as the parent).
func listStore(root string) ([]string, error) {
	var rels []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			return nil
		}
		rel := relOf(root, p)
		if rel != "." && excluded[strings.SplitN(rel, "/", 2)[0]] {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		rels = append(rels, rel)
		return nil
	})
	sort.Strings(rels)
	return rels, err
}

func relOf(root, p string) string {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return filepath.ToSlash(rel)
}

// statePaths records the given store paths (relative to root).
func statePaths(root string, rels []string) map[string]entry {
	m := make(map[string]entry, len(rels))
	for _, rel := range rels {
		m[rel] = stateOf(filepath.Join(root, filepath.FromSlash(rel)))
	}
	return m
}

// diffStates lists every difference between two recordings, sorted by path.
// A path absent from a recording counts as missing.
func diffStates(before, after map[string]entry) []change {
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []change
	for _, k := range sorted {
		b, ok := before[k]
		if !ok {
			b = entry{Type: "missing"}
		}
		a, ok := after[k]
		if !ok {
			a = entry{Type: "missing"}
		}
		if w := diffEntry(b, a); w != "" {
			out = append(out, change{k, w})
		}
	}
	return out
}

func diffEntry(b, a entry) string {
	if b.Type != a.Type {
		switch {
		case a.Type == "missing":
			return "removed (was " + b.Type + ")"
		case b.Type == "missing":
			return "appeared (" + a.Type + ")"
		case a.Type == "error":
			return fmt.Sprintf("%s became unreadable: %s", b.Type, a.Err)
		default:
			return fmt.Sprintf("type %s -> %s", b.Type, a.Type)
		}
	}
	var d []string
	if b.Size != a.Size {
		d = append(d, fmt.Sprintf("size %d -> %d", b.Size, a.Size))
	}
	if b.Mode != a.Mode {
		d = append(d, fmt.Sprintf("mode %04o -> %04o", b.Mode, a.Mode))
	}
	if b.UID != a.UID || b.GID != a.GID {
		d = append(d, fmt.Sprintf("owner %d:%d -> %d:%d", b.UID, b.GID, a.UID, a.GID))
	}
	if b.SHA256 != a.SHA256 {
		d = append(d, fmt.Sprintf("content changed (sha256 %s -> %s)", abbrev(b.SHA256), abbrev(a.SHA256)))
	}
	if b.Flags != a.Flags {
		d = append(d, fmt.Sprintf("flags %#x -> %#x", b.Flags, a.Flags))
	}
	if b.FlagsErr != a.FlagsErr {
		d = append(d, fmt.Sprintf("flags error %q -> %q", b.FlagsErr, a.FlagsErr))
	}
	names := map[string]bool{}
	for k := range b.Xattrs {
		names[k] = true
	}
	for k := range a.Xattrs {
		names[k] = true
	}
	sortedNames := make([]string, 0, len(names))
	for k := range names {
		sortedNames = append(sortedNames, k)
	}
	sort.Strings(sortedNames)
	for _, k := range sortedNames {
		bv, bok := b.Xattrs[k]
		av, aok := a.Xattrs[k]
		switch {
		case bok && !aok:
			d = append(d, "xattr "+k+" removed")
		case !bok && aok:
			d = append(d, fmt.Sprintf("xattr %s added (%q)", k, av))
		case !bytes.Equal(bv, av):
			d = append(d, fmt.Sprintf("xattr %s %q -> %q", k, bv, av))
		}
	}
	if b.Link != a.Link {
		d = append(d, fmt.Sprintf("symlink target %q -> %q", b.Link, a.Link))
	}
	if b.Err != a.Err {
		d = append(d, fmt.Sprintf("error %q -> %q", b.Err, a.Err))
	}
	return strings.Join(d, "; ")
}

func abbrev(s string) string {
	if s == "" {
		return "none"
	}
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// integrityChanges compares the walks before the first and after the last
// technique; a walk that failed counts as a change, since nothing then
// shows the store unchanged.
func integrityChanges(before map[string]entry, berr error, after map[string]entry, aerr error) []change {
	var out []change
	if berr != nil {
		out = append(out, change{".", "integrity walk before the attacks failed: " + berr.Error()})
	}
	if aerr != nil {
		out = append(out, change{".", "integrity walk after the attacks failed: " + aerr.Error()})
	}
	if berr == nil && aerr == nil {
		out = append(out, diffStates(before, after)...)
	}
	return out
}

// targets are the store files the techniques aim at, chosen from the
// store's listing (the config file stands in for a missing kind).
type targets struct {
	pack, pack2, manifest, receipt, helperPack string
}

const configName = "holdfast-store"

var (
	rePack     = regexp.MustCompile(`^packs/[0-9a-f]{2}/[0-9a-f]{64}$`)
	reManifest = regexp.MustCompile(`^snapshots/[^/]+\.snap$`)
	reReceipt  = regexp.MustCompile(`^receipts/[^/]+\.receipt$`)
)

// pickTargets chooses targets from a sorted list of store paths.
func pickTargets(rels []string) targets {
	var packs, manifests, receipts []string
	for _, r := range rels {
		switch {
		case rePack.MatchString(r):
			packs = append(packs, r)
		case reManifest.MatchString(r):
			manifests = append(manifests, r)
		case reReceipt.MatchString(r):
			receipts = append(receipts, r)
		}
	}
	sort.Strings(packs)
	sort.Strings(manifests)
	sort.Strings(receipts)
	t := targets{pack: configName, pack2: configName, manifest: configName, receipt: configName, helperPack: configName}
	if len(manifests) > 0 {
		t.manifest = manifests[0]
		t.pack2 = manifests[0]
	}
	if len(receipts) > 0 {
		t.receipt = receipts[0]
	}
	if len(packs) > 0 {
		t.pack = packs[0]
		t.helperPack = packs[len(packs)-1]
	}
	if len(packs) > 1 {
		t.pack2 = packs[1]
	}
	return t
}

// checkSet are the paths re-read before and after each store technique.
func (t targets) checkSet() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range []string{".", "packs", "snapshots", "receipts", filepath.Dir(t.pack), t.pack, t.pack2, t.manifest, t.receipt} {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
