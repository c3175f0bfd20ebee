package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// configFiles are the sealed files of the config partition (time.a and
// time.b: the trusted time records, firmware/trustedtime).
var configFiles = []string{"master.sealed", "config.sealed", "clock.anchor", "time.a", "time.b"}

// fileSnap is a file's content and mode, to check and undo an attack.
type fileSnap struct {
	exists bool
	err    error
	data   []byte
	mode   os.FileMode
}

func snapFile(p string) fileSnap {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fileSnap{}
	}
	if err != nil {
		return fileSnap{exists: true, err: err}
	}
	b, err := os.ReadFile(p)
	return fileSnap{exists: true, err: err, data: b, mode: fi.Mode()}
}

// differs says how after differs from s ("" when it does not).
func (s fileSnap) differs(after fileSnap) string {
	switch {
	case s.exists && !after.exists:
		return "removed"
	case !s.exists && after.exists:
		return "appeared"
	case s.err != nil || after.err != nil:
		return ""
	case len(s.data) != len(after.data):
		return fmt.Sprintf("size %d -> %d", len(s.data), len(after.data))
	case !bytes.Equal(s.data, after.data):
		return fmt.Sprintf("content changed (sha256 %x…)", sha256.Sum256(after.data))
	case s.mode != after.mode:
		return fmt.Sprintf("mode %v -> %v", s.mode, after.mode)
	}
	return ""
}

// restore puts a file back as s recorded it.
func (s fileSnap) restore(p string) string {
	if !s.exists || s.err != nil {
		return "not restored"
	}
	return "restored: " + errOr(os.WriteFile(p, s.data, s.mode.Perm()), "ok")
}

// configAttack runs attack on each sealed file of the config partition.
func (e *env) configAttack(verb string, attack func(p string) error) result {
	var rs []result
	for _, name := range configFiles {
		p := filepath.Join(e.cfg.configDir, name)
		before := snapFile(p)
		err := attack(p)
		after := snapFile(p)
		d := before.differs(after)
		switch {
		case err == nil || d != "":
			rs = append(rs, succeededf("%s %s: %s%s (%s)", verb, name, errOr(err, "returned success"), prefixed("; ", d), before.restore(p)))
		case before.err != nil:
			rs = append(rs, refusedf("%s %s: %v (effect not checked: %v)", verb, name, err, before.err))
		default:
			rs = append(rs, refusedf("%s %s: %v", verb, name, err))
		}
	}
	return combine(rs...)
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func (e *env) configDelete() result {
	return e.configAttack("unlink", func(p string) error { return unix.Unlink(p) })
}

func (e *env) configTruncate() result {
	return e.configAttack("truncate", func(p string) error { return unix.Truncate(p, 0) })
}

func (e *env) configOverwrite() result {
	return e.configAttack("overwrite", func(p string) error {
		fd, err := unix.Open(p, unix.O_WRONLY|attackOpen, 0)
		if err != nil {
			return fmt.Errorf("open for write: %w", err)
		}
		defer unix.Close(fd)
		_, err = unix.Pwrite(fd, []byte(strings.Repeat("holdfast-attack ", 4)), 0)
		return err
	})
}
