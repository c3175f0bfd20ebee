package trustedtime

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Record files: two slots on the config partition, PID 1 writes the older
// one (the one with the lower generation) with atomicfile, so a torn write
// leaves the other slot and T falls back to it (late, never early).
//
//	| file         | content                                   |
//	|--------------|-------------------------------------------|
//	| time.a       | a record, even generations                |
//	| time.b       | a record, odd generations                 |
//
// Record (RecordLen bytes, big endian):
//
//	| offset | size | field                                                  |
//	|--------|------|--------------------------------------------------------|
//	| 0      | 8    | magic "HOLDTIME"                                       |
//	| 8      | 2    | version (1)                                            |
//	| 10     | 8    | generation (each save adds one)                        |
//	| 18     | 8    | T, Unix nanoseconds                                    |
//	| 26     | 8    | wall clock at the record, Unix nanoseconds             |
//	| 34     | 32   | TPM identity (SHA-256 of the SRK Name)                 |
//	| 66     | 8    | TPM Clock, ms                                          |
//	| 74     | 4    | TPM resetCount                                         |
//	| 78     | 4    | TPM restartCount                                       |
//	| 82     | 32   | HMAC-SHA256(time key, bytes 0..82)                     |
//
// time key = HKDF-SHA256(master key, info "holdfast pid1 trusted time v1").
// Only PID 1 derives it; the worker, the sealer and the export role never
// need it, and hold only store subkeys (docs/keys.md), never the master
// key it comes from. The config partition adds a second barrier: only
// PID 1 mounts it, and read-only after lockdown.
const (
	recordMagic   = "HOLDTIME"
	recordVersion = 1
	// RecordLen is the size of a record file; a file of any other size
	// is ignored unread beyond RecordLen+1 bytes.
	RecordLen = 114
	keyInfo   = "holdfast pid1 trusted time v1"
)

// SlotFile returns the name of the record file of slot i: "time.a" for
// even generations, "time.b" for odd ones.
func SlotFile(i int) string {
	if i&1 == 0 {
		return "time.a"
	}
	return "time.b"
}

// ErrNoRecord means neither slot holds an authentic record: T is unknown
// until the operator confirms the time at the console (or provisioning
// starts it). Prune does not run without T.
var ErrNoRecord = errors.New("no authentic trusted time record")

// Key derives the records' MAC key from the master key.
func Key(master []byte) ([]byte, error) {
	if len(master) < 32 {
		return nil, fmt.Errorf("trusted time key: master key is %d bytes, want 32", len(master))
	}
	k, err := hkdf.Key(sha256.New, master, nil, keyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("trusted time key: %w", err)
	}
	return k, nil
}

// Encode returns the record of s with generation gen.
func Encode(key []byte, gen uint64, s State) []byte {
	b := append([]byte(recordMagic), 0, recordVersion)
	b = binary.BigEndian.AppendUint64(b, gen)
	b = binary.BigEndian.AppendUint64(b, uint64(s.T.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(s.Wall.UnixNano()))
	b = append(b, s.Reading.TPM[:]...)
	b = binary.BigEndian.AppendUint64(b, s.Reading.Clock)
	b = binary.BigEndian.AppendUint32(b, s.Reading.ResetCount)
	b = binary.BigEndian.AppendUint32(b, s.Reading.RestartCount)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(b)
}

// Decode authenticates and parses a record. Any failure is an error and
// the record must be ignored.
func Decode(key, b []byte) (uint64, State, error) {
	if len(b) != RecordLen {
		return 0, State{}, fmt.Errorf("record is %d bytes, want %d (torn or not a record)", len(b), RecordLen)
	}
	if string(b[:8]) != recordMagic || binary.BigEndian.Uint16(b[8:]) != recordVersion {
		return 0, State{}, errors.New("not a version 1 trusted time record")
	}
	m := hmac.New(sha256.New, key)
	m.Write(b[:82])
	if !hmac.Equal(m.Sum(nil), b[82:]) {
		return 0, State{}, errors.New("record fails its MAC (forged, torn, or another box's)")
	}
	var s State
	gen := binary.BigEndian.Uint64(b[10:])
	s.T = time.Unix(0, int64(binary.BigEndian.Uint64(b[18:])))
	s.Wall = time.Unix(0, int64(binary.BigEndian.Uint64(b[26:])))
	copy(s.Reading.TPM[:], b[34:66])
	s.Reading.Clock = binary.BigEndian.Uint64(b[66:])
	s.Reading.ResetCount = binary.BigEndian.Uint32(b[74:])
	s.Reading.RestartCount = binary.BigEndian.Uint32(b[78:])
	return gen, s, nil
}

// Pick chooses among the slots' contents (nil for a missing file): the
// authentic record with the highest generation. ignored says why each
// other non-empty slot was not used.
func Pick(key []byte, slots [2][]byte) (gen uint64, s State, ignored []error, err error) {
	found := false
	for i, b := range slots {
		if b == nil {
			continue
		}
		g, st, derr := Decode(key, b)
		if derr != nil {
			ignored = append(ignored, fmt.Errorf("%s: %w", SlotFile(i), derr))
			continue
		}
		if g&1 != uint64(i) {
			ignored = append(ignored, fmt.Errorf("%s: generation %d belongs in the other slot", SlotFile(i), g))
			continue
		}
		if !found || g > gen {
			gen, s, found = g, st, true
		}
	}
	if !found {
		return 0, State{}, ignored, ErrNoRecord
	}
	return gen, s, ignored, nil
}
