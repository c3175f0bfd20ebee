// Package recoverykey makes, parses and uses Holdfast's paper recovery key:
// the key the console shows once at provisioning, which opens the store on
// any Linux PC when the appliance's TPM is gone or will not unseal.
//
// A recovery key is 8 groups of 6 decimal digits, e.g.
//
//	104367-892014-557203-310986-649125-078432-915560-263817
//
// Each group is 5 random digits followed by a Damm check digit computed over
// the group's number (1..8) and its 5 digits, so a mistyped digit or two
// swapped neighbouring digits is caught and named by group before any
// cryptography runs; since the group number is the first digit checked, two
// groups typed in each other's place are caught too. The 40 random
// digits carry log2(10^40) ≈ 132.9 bits of entropy.
//
// The master key is wrapped (AES-256-GCM) under a key derived from the 40
// digits with HKDF-SHA256 and a random 32-byte salt. Because the input has
// more than 128 bits of entropy a slow password hash (argon2id) would add
// nothing an attacker notices, and HKDF keeps recovery instant on a small
// board and on any PC.
//
// Limits: the key is only as secret as the paper it is written on. The
// package never stores the recovery key itself; a lost key and a dead TPM
// together mean the store cannot be read.
package recoverykey

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/holdfast-appliance/holdfast/firmware/atomicfile"
)

// Shape of a recovery key.
const (
	Groups      = 8
	GroupDigits = 6 // 5 data digits + 1 check digit
	dataDigits  = GroupDigits - 1
)

// Key is a parsed recovery key: the 40 data digits (0..9 each).
type Key struct {
	digits [Groups * dataDigits]byte
}

// ErrWrongKey means the key is well formed (every check digit matches) but
// is not the key this wrapped file was made with.
var ErrWrongKey = errors.New("recovery key does not open this wrapped key")

// GroupError names the group (1..8) of a recovery key that is wrong.
type GroupError struct {
	Group  int
	Text   string
	Reason string
}

func (e *GroupError) Error() string {
	return fmt.Sprintf("recovery key group %d (%q): %s", e.Group, e.Text, e.Reason)
}

// damm is the Damm algorithm's quasigroup table (order 10, weakly totally
// anti-symmetric): it detects every single-digit error and every transposition
// of adjacent digits.
var damm = [10][10]byte{
	{0, 3, 1, 7, 5, 9, 8, 6, 4, 2},
	{7, 0, 9, 2, 1, 5, 4, 8, 6, 3},
	{4, 2, 0, 6, 8, 7, 1, 3, 5, 9},
	{1, 7, 5, 0, 9, 8, 3, 4, 2, 6},
	{6, 1, 2, 3, 0, 4, 5, 9, 7, 8},
	{3, 6, 7, 4, 2, 0, 9, 5, 8, 1},
	{5, 8, 6, 9, 7, 2, 0, 1, 3, 4},
	{8, 9, 4, 5, 3, 6, 2, 0, 1, 7},
	{9, 4, 3, 8, 6, 1, 7, 2, 0, 5},
	{2, 5, 8, 1, 4, 3, 6, 7, 9, 0},
}

// checkDigit is the Damm check digit of group g (1-based) with data digits d.
func checkDigit(g int, d []byte) byte {
	var x byte
	x = damm[x][g%10]
	for _, c := range d {
		x = damm[x][c]
	}
	return x
}

// Generate returns a new random recovery key.
func Generate() (Key, error) {
	var k Key
	ten := big.NewInt(10)
	for i := range k.digits {
		n, err := rand.Int(rand.Reader, ten)
		if err != nil {
			return Key{}, fmt.Errorf("recovery key: random: %w", err)
		}
		k.digits[i] = byte(n.Int64())
	}
	return k, nil
}

// String formats the key as 8 dash-separated groups of 6 digits.
func (k Key) String() string {
	var b strings.Builder
	for g := range Groups {
		if g > 0 {
			b.WriteByte('-')
		}
		d := k.digits[g*dataDigits : (g+1)*dataDigits]
		for _, c := range d {
			b.WriteByte('0' + c)
		}
		b.WriteByte('0' + checkDigit(g+1, d))
	}
	return b.String()
}

// Parse reads a recovery key as typed: groups may be separated by dashes,
// spaces or nothing at all. A wrong group is reported as a *GroupError.
func Parse(s string) (Key, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == '-' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	var groups []string
	switch {
	case len(fields) == Groups:
		groups = fields
	default:
		joined := strings.Join(fields, "")
		if len(joined) != Groups*GroupDigits {
			return Key{}, fmt.Errorf("recovery key: want %d groups of %d digits, got %d groups and %d characters", Groups, GroupDigits, len(fields), len(joined))
		}
		for g := range Groups {
			groups = append(groups, joined[g*GroupDigits:(g+1)*GroupDigits])
		}
	}
	var k Key
	for g, text := range groups {
		if len(text) != GroupDigits {
			return Key{}, &GroupError{Group: g + 1, Text: text, Reason: fmt.Sprintf("has %d characters, want %d digits", len(text), GroupDigits)}
		}
		var d [GroupDigits]byte
		for i := range GroupDigits {
			c := text[i]
			if c < '0' || c > '9' {
				return Key{}, &GroupError{Group: g + 1, Text: text, Reason: fmt.Sprintf("character %d is not a digit", i+1)}
			}
			d[i] = c - '0'
		}
		if checkDigit(g+1, d[:dataDigits]) != d[dataDigits] {
			return Key{}, &GroupError{Group: g + 1, Text: text, Reason: "check digit does not match (a typo in this group?)"}
		}
		copy(k.digits[g*dataDigits:], d[:dataDigits])
	}
	return k, nil
}

// kek derives the key-encryption key.
func (k Key) kek(salt []byte) ([]byte, error) {
	secret := make([]byte, len(k.digits))
	for i, c := range k.digits {
		secret[i] = '0' + c
	}
	return hkdf.Key(sha256.New, secret, salt, "holdfast recovery key v1", 32)
}

// Wrapped-key file (tpm.RecoveryFile on the config partition; a copy may
// live beside the store):
//
//	| offset | size | field                                               |
//	|--------|------|-----------------------------------------------------|
//	| 0      | 8    | magic "HOLDRKEY"                                    |
//	| 8      | 2    | version, big endian (1)                             |
//	| 10     | 1    | KDF: 1 = HKDF-SHA256 over the 40 data digits (ASCII)|
//	| 11     | 32   | KDF salt (random)                                   |
//	| 43     | 12   | AES-GCM nonce (random)                              |
//	| 55     | 48   | AES-256-GCM(KEK, AD = bytes 0..55) of the 32-byte   |
//	|        |      | master key, with its 16-byte tag                    |
const (
	wrapMagic   = "HOLDRKEY"
	wrapVersion = 1
	kdfHKDF     = 1
	headerLen   = 55
	// WrappedSize is the size of a wrapped-key file.
	WrappedSize = headerLen + 32 + 16
)

// Wrap encrypts the 32-byte master key under the recovery key.
func Wrap(master []byte, k Key) ([]byte, error) {
	if len(master) != 32 {
		return nil, fmt.Errorf("wrap: master key is %d bytes, want 32", len(master))
	}
	hdr := make([]byte, headerLen)
	copy(hdr, wrapMagic)
	binary.BigEndian.PutUint16(hdr[8:], wrapVersion)
	hdr[10] = kdfHKDF
	if _, err := rand.Read(hdr[11:headerLen]); err != nil {
		return nil, fmt.Errorf("wrap: random: %w", err)
	}
	aead, err := k.aead(hdr[11:43])
	if err != nil {
		return nil, err
	}
	return aead.Seal(hdr, hdr[43:55], master, hdr), nil
}

// Unwrap decrypts a wrapped-key file's bytes with the recovery key. A well
// formed key that is not the right one gives ErrWrongKey.
func Unwrap(blob []byte, k Key) ([]byte, error) {
	if len(blob) != WrappedSize || string(blob[:8]) != wrapMagic {
		return nil, errors.New("unwrap: not a Holdfast wrapped key")
	}
	if v := binary.BigEndian.Uint16(blob[8:]); v != wrapVersion {
		return nil, fmt.Errorf("unwrap: version %d not supported", v)
	}
	if blob[10] != kdfHKDF {
		return nil, fmt.Errorf("unwrap: KDF %d not supported", blob[10])
	}
	aead, err := k.aead(blob[11:43])
	if err != nil {
		return nil, err
	}
	master, err := aead.Open(nil, blob[43:55], blob[headerLen:], blob[:headerLen])
	if err != nil {
		return nil, ErrWrongKey
	}
	return master, nil
}

func (k Key) aead(salt []byte) (cipher.AEAD, error) {
	kek, err := k.kek(salt)
	if err != nil {
		return nil, fmt.Errorf("recovery KEK: %w", err)
	}
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// WriteFile writes a wrapped key to path (mode 0600) through a synced
// temporary file. It never replaces an existing file (os.ErrExist): use it
// for the copy beside the store, e.g. STORE/../holdfast-recovery.
func WriteFile(path string, blob []byte) error {
	if err := atomicfile.Write(path, blob, true); err != nil {
		return fmt.Errorf("write wrapped key: %w", err)
	}
	return nil
}

// Opener is a store.KeySource that opens the master key from a wrapped-key
// file with the recovery key: `holdfast restore` and the console's safe mode
// use it. It needs no TPM.
type Opener struct {
	Key  Key
	Path string // the wrapped-key file
}

// MasterKey reads and unwraps the master key.
func (o Opener) MasterKey(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	blob, err := os.ReadFile(o.Path)
	if err != nil {
		return nil, fmt.Errorf("recovery: read wrapped key: %w", err)
	}
	m, err := Unwrap(blob, o.Key)
	if err != nil {
		return nil, fmt.Errorf("recovery: %s: %w", o.Path, err)
	}
	return m, nil
}
