package tpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast-appliance/holdfast/firmware/atomicfile"
)

// Files in the key directory (the config partition):
//
//	| name              | written by                 | what                                   |
//	|-------------------|----------------------------|----------------------------------------|
//	| master.sealed     | Provision, Reseal          | the master key sealed to the TPM       |
//	| master.recovery   | Provision                  | the master key wrapped under the paper |
//	|                   |                            | recovery key (package recoverykey)     |
//	| pcr-policy.signed | the firmware build         | signed PCR policies (SignedPolicy)     |
//	| clock.anchor      | Clock.Anchor               | the TPM clock anchor, MACed            |
const (
	SealedKeyFile    = "master.sealed"
	RecoveryFile     = "master.recovery"
	SignedPolicyFile = "pcr-policy.signed"
	ClockAnchorFile  = "clock.anchor"
)

// Sealed-key file (SealedKeyFile):
//
//	| offset | size | field                                                    |
//	|--------|------|----------------------------------------------------------|
//	| 0      | 8    | magic "HOLDSEAL"                                         |
//	| 8      | 2    | version, big endian (1)                                  |
//	| 10     | 1    | mode: 1 = PolicyPCR, 2 = PolicyAuthorize then PolicyPCR  |
//	| 11     | 4    | firmware PCR mask, big endian (bit n = SHA-256 PCR n)    |
//	| 15     | 4    | config PCR mask, big endian                              |
//	| 19     | ...  | five fields, each a 2-byte big-endian length and bytes:  |
//	|        |      |   SRK Name (TPM2B_NAME buffer)                           |
//	|        |      |   firmware signing key Name (empty in mode 1)            |
//	|        |      |   authPolicy of the sealed object                        |
//	|        |      |   TPM2B_PUBLIC of the sealed object, as marshalled       |
//	|        |      |   TPM2B_PRIVATE of the sealed object, as marshalled      |
//	| end-32 | 32   | SHA-256 of every byte before it (detects a torn write)   |
//
// The private blob is encrypted by the TPM under the SRK; the file holds no
// secret a thief without this TPM can use.
const (
	sealedMagic   = "HOLDSEAL"
	sealedVersion = 1
	modePCR       = 1
	modeAuthorize = 2
)

type sealedFile struct {
	mode       byte
	fwMask     uint32
	cfgMask    uint32
	srkName    []byte
	authName   []byte
	authPolicy []byte
	public     []byte
	private    []byte
}

func (f *sealedFile) encode() []byte {
	b := append([]byte(sealedMagic), 0, sealedVersion, f.mode)
	b = binary.BigEndian.AppendUint32(b, f.fwMask)
	b = binary.BigEndian.AppendUint32(b, f.cfgMask)
	for _, v := range [][]byte{f.srkName, f.authName, f.authPolicy, f.public, f.private} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func decodeSealed(b []byte) (*sealedFile, error) {
	if len(b) < 19+32 || string(b[:8]) != sealedMagic {
		return nil, errors.New("bad magic or too short")
	}
	body, sum := b[:len(b)-32], b[len(b)-32:]
	if s := sha256.Sum256(body); !bytes.Equal(s[:], sum) {
		return nil, errors.New("checksum mismatch (torn or damaged file)")
	}
	if v := binary.BigEndian.Uint16(body[8:]); v != sealedVersion {
		return nil, fmt.Errorf("version %d not supported", v)
	}
	f := &sealedFile{mode: body[10], fwMask: binary.BigEndian.Uint32(body[11:]), cfgMask: binary.BigEndian.Uint32(body[15:])}
	if f.mode != modePCR && f.mode != modeAuthorize {
		return nil, fmt.Errorf("unknown mode %d", f.mode)
	}
	rest := body[19:]
	for _, dst := range []*[]byte{&f.srkName, &f.authName, &f.authPolicy, &f.public, &f.private} {
		if len(rest) < 2 {
			return nil, errors.New("truncated")
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n {
			return nil, errors.New("truncated")
		}
		*dst = rest[2 : 2+n]
		rest = rest[2+n:]
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing bytes")
	}
	return f, nil
}

func readSealed(dir string) (*sealedFile, error) {
	p := filepath.Join(dir, SealedKeyFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, unsealErr(ErrNoSealedKey, "%s does not exist", p)
	}
	if err != nil {
		return nil, unsealErr(ErrNoSealedKey, "read %s: %v", p, err)
	}
	f, err := decodeSealed(b)
	if err != nil {
		return nil, unsealErr(ErrBadSealedKey, "%s: %v", p, err)
	}
	return f, nil
}

// writeFileAtomic replaces path through package atomicfile; with
// exclusive it refuses to replace an existing file (os.ErrExist).
func writeFileAtomic(path string, data []byte, exclusive bool) error {
	return atomicfile.Write(path, data, exclusive)
}
