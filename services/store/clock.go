package store

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Clock is the time source the store records and prune trusts. On the
// appliance it is built on the TPM clock; SystemClock serves hosts and tests.
// An implementation returns an error when it cannot vouch for the time.
type Clock interface {
	Now() (time.Time, error)
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now.
func (SystemClock) Now() (time.Time, error) { return time.Now(), nil }

// ErrClockUntrusted means prune refused because its clock would not give a
// time (only when PruneOptions.Now is not set).
var ErrClockUntrusted = errors.New("clock is not trusted")

// Clock high-water log (STORE/state/clock.log), FS_APPEND_FL on the file so
// records can only be added:
//
//	| size | field                                                    |
//	|------|----------------------------------------------------------|
//	| 8    | time, Unix nanoseconds, big endian                       |
//	| 8    | first 8 bytes of HMAC-SHA256(clock key, the 8 bytes)     |
//
// The high-water mark is the largest authentic record. A torn record is
// padded with zeros to the next record boundary (it then fails its tag).
// Prune no longer reads it (it compares retention with the trusted time T
// only, firmware/trustedtime); it remains a record of the latest commit
// time, which services/mirror carries to a secondary.
const clockRecLen = 16

func (s *Store) clockLogPath() string { return s.path(stateDir, clockLogName) }

func (s *Store) clockTag(ns []byte) []byte {
	m := hmac.New(sha256.New, s.keys.clock)
	m.Write(ns)
	return m.Sum(nil)[:8]
}

// openClockLog makes sure the log exists, is append-only and aligned.
func (s *Store) openClockLog() error {
	f, size, err := openStoreFile(s.clockLogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, -1)
	if errors.Is(err, ErrForeign) {
		// Left for CleanForeign (nothing reads the log to decide anything).
		s.log.Warn("clock log is not a regular file; the maintenance window removes it", "error", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("clock log: %w", err)
	}
	defer f.Close()
	if rem := size % clockRecLen; rem != 0 {
		if _, err := f.Write(make([]byte, clockRecLen-rem)); err != nil {
			return fmt.Errorf("clock log pad: %w", err)
		}
	}
	if err := s.sealer.SealDir(s.clockLogPath()); err != nil {
		return fmt.Errorf("clock log flag: %w", err)
	}
	return nil
}

// HighWater returns the largest authentic time recorded in the clock log.
// Records are appended only past the mark, so the mark is in the log's last
// records: only its last maxClockLogRead bytes are read, however long the
// log has grown. A long log whose tail holds no authentic record is an
// error wrapping ErrClockUntrusted, never an empty mark.
func (s *Store) HighWater() (time.Time, error) {
	f, size, err := openStoreFile(s.clockLogPath(), os.O_RDONLY, -1)
	if errors.Is(err, os.ErrNotExist) {
		return time.Time{}, nil
	}
	if errors.Is(err, ErrForeign) {
		return time.Time{}, fmt.Errorf("%w: clock log: %v", ErrClockUntrusted, err)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("clock log: %w", err)
	}
	defer f.Close()
	from := max(0, size-maxClockLogRead)
	from -= from % clockRecLen
	r := bufio.NewReader(io.NewSectionReader(f, from, size-from))
	var hw int64
	rec := make([]byte, clockRecLen)
	for {
		if _, err := io.ReadFull(r, rec); err != nil {
			break
		}
		if hmac.Equal(rec[8:], s.clockTag(rec[:8])) {
			if ns := int64(binary.BigEndian.Uint64(rec[:8])); ns > hw {
				hw = ns
			}
		}
	}
	if hw == 0 && from > 0 {
		// Junk appended after the mark hides it: prune must not take that
		// for an empty log, so it refuses (and keeps everything).
		return time.Time{}, fmt.Errorf("%w: the last %d bytes of the clock log hold no authentic record", ErrClockUntrusted, size-from)
	}
	if hw == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, hw), nil
}

// recordClock appends the time of clock c to the clock log when it is past
// the high-water mark.
func (s *Store) recordClock(c Clock) error {
	if s.ro {
		return nil
	}
	now, err := c.Now()
	if err != nil {
		return err
	}
	hw, err := s.HighWater()
	if err != nil {
		return err
	}
	if !now.After(hw) {
		return nil
	}
	rec := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	rec = append(rec, s.clockTag(rec)...)
	f, _, err := openStoreFile(s.clockLogPath(), os.O_WRONLY|os.O_APPEND, -1)
	if err != nil {
		return fmt.Errorf("clock log: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(rec); err != nil {
		return fmt.Errorf("clock log: %w", err)
	}
	return f.Sync()
}
