// Package sealer is the tiny process that alone holds CAP_LINUX_IMMUTABLE
// after lockdown. The store, running unprivileged, asks it over a pipe to
// seal a file (FS_IMMUTABLE_FL) or a directory or log (FS_APPEND_FL); the
// sealer checks the path against the store's layout, opens it beneath the
// store root without following any symlink, and sets the flag. There is no
// request that clears a flag: a compromised store process can ask for more
// protection, never less.
//
// Limits: one store root per sealer; requests are served one at a time;
// paths are relative to the root and must match the layout below exactly;
// a file is sealed only when it is a regular file with one name whose
// content starts (a pack: and ends) with the magic of the kind its name
// claims, within that kind's size bound.
//
// Wire format (both directions over one stream, e.g. a socketpair):
//
//	| request  | size | field                                              |
//	|----------|------|----------------------------------------------------|
//	|          | 1    | op: 'F' seal file immutable, 'D' set append-only   |
//	|          | 2    | path length N, big endian (at most 1024)           |
//	|          | N    | path relative to the store root, "/" separated     |
//	| response | 1    | 0 sealed, 1 refused                                |
//	|          | 2    | message length M, big endian (at most 1024)        |
//	|          | M    | why it was refused (empty when sealed)             |
package sealer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Ops a client may ask for. Nothing clears a flag.
const (
	OpSealFile  byte = 'F'
	OpAppendDir byte = 'D'
)

const maxPath = 1024

// The layout the sealer accepts, per op; mirrors services/store/doc.go.
var (
	filePatterns   = regexp.MustCompile(`^(holdfast-store|packs/([0-9a-f]{2})/([0-9a-f]{64})|snapshots/[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\.snap|retention/[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\.[0-9]{1,20}\.ext|receipts/[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}\.receipt|recovery/wrapped-key)$`)
	appendPatterns = regexp.MustCompile(`^(\.|packs|packs/[0-9a-f]{2}|snapshots|retention|receipts|recovery|state/clock\.log)$`)
)

// fileKind is what the sealer checks of a file before sealing it: its
// magic (mirrors services/store's formats and firmware/recoverykey's;
// TestStoreSealedThroughSealerProcess has the sealer seal a config, pack,
// manifest and retention record the store wrote), for a manifest the
// snapshot ID its header must carry, and a size bound (0: none; a manifest
// is read frame by frame, whatever its size).
type fileKind struct {
	name     string
	magic    string
	oldMagic string // an earlier format's magic, of the same length, still accepted
	idAfter  string // bytes that must follow the magic
	endMagic string
	max      int64
}

// maxPack bounds a pack: a 4 GiB pack size (the config's field is 32
// bits), one chunk past it and the largest trailer.
const maxPack = 4<<30 + 16<<20 + 64<<20 + 1<<20

// kindOf returns the kind of a path checkPath accepted for OpSealFile.
func kindOf(rel string) fileKind {
	dir, name, _ := strings.Cut(rel, "/")
	switch dir {
	case "holdfast-store":
		return fileKind{name: "store config", magic: "HOLDFAST", max: 64 << 10}
	case "packs":
		return fileKind{name: "pack", magic: "HFPACK01", endMagic: "HFPKEND1", max: maxPack}
	case "snapshots":
		return fileKind{name: "manifest", magic: "HFSNAP02", oldMagic: "HFSNAP01", idAfter: strings.TrimSuffix(name, ".snap")}
	case "retention":
		return fileKind{name: "retention record", magic: "HFRETX01", max: 64 << 10}
	case "recovery":
		return fileKind{name: "recovery blob", magic: "HOLDRKEY", max: 64 << 10}
	default: // receipts: signed by the TPM, no magic of their own
		return fileKind{name: "receipt", max: 64 << 10}
	}
}

// ErrRefused marks a request the sealer would not carry out.
var ErrRefused = errors.New("sealer refused")

// checkPath says whether rel is a path op may act on.
func checkPath(op byte, rel string) error {
	switch op {
	case OpSealFile:
		m := filePatterns.FindStringSubmatch(rel)
		if m == nil {
			return fmt.Errorf("%q is not a sealable store file", rel)
		}
		if m[2] != "" && m[3][:2] != m[2] {
			return fmt.Errorf("pack %q is not in its shard", rel)
		}
		return nil
	case OpAppendDir:
		if !appendPatterns.MatchString(rel) {
			return fmt.Errorf("%q is not an append-only store directory or log", rel)
		}
		return nil
	default:
		return fmt.Errorf("unknown op %q", op)
	}
}

func writeMsg(w io.Writer, tag byte, msg string) error {
	if len(msg) > maxPath {
		msg = msg[:maxPath]
	}
	buf := make([]byte, 0, 3+len(msg))
	buf = append(buf, tag)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(msg)))
	buf = append(buf, msg...)
	_, err := w.Write(buf)
	return err
}

func readMsg(r io.Reader) (byte, string, error) {
	var h [3]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, "", err
	}
	n := binary.BigEndian.Uint16(h[1:])
	if n > maxPath {
		return 0, "", fmt.Errorf("message of %d bytes exceeds %d", n, maxPath)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, "", err
	}
	return h[0], string(b), nil
}
