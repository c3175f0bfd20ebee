// Package configpart keeps the appliance's own state on the config
// partition of its boot medium (GPT partition HOLDFAST-CONFIG, FAT32): the
// master key sealed to the TPM, its recovery wrap, the config the operator
// pushed, encrypted under the master key, and the TPM clock anchor.
//
// Files (all under the partition's holdfast/ directory):
//
//	| file             | written by               | content                                  |
//	|------------------|--------------------------|------------------------------------------|
//	| master.sealed    | tpm.ProvisionKey/Reseal  | the master key sealed to PCRs 7, 11, 15  |
//	| master.recovery  | tpm.ProvisionKey         | the master key wrapped by the paper key  |
//	| config.sealed    | SealConfig (this package)| the pushed config, AES-256-GCM (below)   |
//	| clock.anchor     | firmware before T        | old MACed TPM clock anchor; read once    |
//	| time.a, time.b   | trustedtime.Keeper       | trusted time T, MACed, PID 1 only        |
//
// config.sealed:
//
//	| offset | size | field                                                     |
//	|--------|------|-----------------------------------------------------------|
//	| 0      | 8    | magic "HFCONFIG"                                          |
//	| 8      | 1    | version (1)                                               |
//	| 9      | 12   | GCM nonce (random)                                        |
//	| 21     | n    | AES-256-GCM(key, nonce, config, AD = bytes 0..21)         |
//
// key = HKDF-SHA256(master key, info "holdfast config v1"). The SHA-256 of
// the whole file is what init extends into PCR 15 before unsealing, so the
// key unseals only with the config it was sealed with, and a config
// changed on the stick while the box was off sends it to safe mode.
//
// Limits: FAT has no permissions and no atomic multi-file update; each file
// is replaced by write, fsync, rename, fsync of the directory, and a crash
// between replacing master.sealed and config.sealed at a reconfiguration
// leaves a pair that does not unseal (safe mode; the recovery key reseals).
package configpart

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast-appliance/holdfast/firmware/atomicfile"
)

// File names inside Dir.
const (
	ConfigFile = "config.sealed"
	// SubDir is the directory on the partition holding every file.
	SubDir = "holdfast"
)

const (
	magic   = "HFCONFIG"
	version = 1
	header  = len(magic) + 1 + 12
)

// ErrBadConfigFile means config.sealed is damaged, from another box, or
// was changed.
var ErrBadConfigFile = errors.New("config.sealed is damaged or not this box's")

func configAEAD(master []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, master, nil, "holdfast config v1", 32)
	if err != nil {
		return nil, fmt.Errorf("config key: %w", err)
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("config key: %w", err)
	}
	return cipher.NewGCM(b)
}

// SealConfig encrypts a config under master (the config.sealed format).
func SealConfig(master, cfg []byte) ([]byte, error) {
	a, err := configAEAD(master)
	if err != nil {
		return nil, err
	}
	out := make([]byte, header, header+len(cfg)+a.Overhead())
	copy(out, magic)
	out[len(magic)] = version
	if _, err := rand.Read(out[len(magic)+1 : header]); err != nil {
		return nil, fmt.Errorf("config nonce: %w", err)
	}
	return a.Seal(out, out[len(magic)+1:header], cfg, out[:header]), nil
}

// OpenConfig decrypts a config.sealed file.
func OpenConfig(master, blob []byte) ([]byte, error) {
	if len(blob) < header || string(blob[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: bad magic", ErrBadConfigFile)
	}
	if blob[len(magic)] != version {
		return nil, fmt.Errorf("%w: version %d", ErrBadConfigFile, blob[len(magic)])
	}
	a, err := configAEAD(master)
	if err != nil {
		return nil, err
	}
	cfg, err := a.Open(nil, blob[len(magic)+1:header], blob[header:], blob[:header])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadConfigFile, err)
	}
	return cfg, nil
}

// Digest is what init extends into the config PCR for a config.sealed file.
func Digest(blob []byte) [32]byte { return sha256.Sum256(blob) }

// Partition is a mounted config partition.
type Partition struct {
	// Dir is the holdfast/ directory on the mounted partition.
	Dir string
}

// ReadConfig returns config.sealed, or an error wrapping os.ErrNotExist on
// a box that has none yet.
func (p *Partition) ReadConfig() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(p.Dir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return b, nil
}

// WriteConfig replaces config.sealed (write, fsync, rename, fsync dir).
func (p *Partition) WriteConfig(blob []byte) error {
	return atomicfile.Write(filepath.Join(p.Dir, ConfigFile), blob, false)
}

// Has reports whether the partition holds the named file.
func (p *Partition) Has(name string) bool {
	_, err := os.Lstat(filepath.Join(p.Dir, name))
	return err == nil
}
