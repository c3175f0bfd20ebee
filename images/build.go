package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/initramfs"
)

// ErrTestModeBoard is returned for a release build of a board that allows
// running without a TPM.
var ErrTestModeBoard = errors.New("board allows TPM-less test mode; release images refuse it")

// Options say what to build.
type Options struct {
	Board *boards.Board
	// OutDir receives holdfast.img and its parts (out/BOARD).
	OutDir string
	// ModuleDir is the root of this Go module (for building the init).
	ModuleDir string
	// KernelCacheDir and InitramfsCacheDir default to the user cache.
	KernelCacheDir, InitramfsCacheDir string
	// NoInitramfsCache rebuilds the initramfs even if a cached one matches.
	NoInitramfsCache bool
	// Release refuses boards with TPM-less test mode and AttackSuite.
	Release bool
	// AttackSuite builds a TEST image whose init has the `attack` console
	// command and whose /bin holds holdfast-attack (firmware/cmd). Its
	// PCR 11 differs from the release image's, so a key sealed by one
	// never opens in the other.
	AttackSuite bool
	Log         hclog.Logger
}

// Result describes a built image.
type Result struct {
	Image         string `json:"image"`
	ImageBytes    int64  `json:"image_bytes"`
	UKI           string `json:"uki"`
	UKIBytes      int64  `json:"uki_bytes"`
	UKISHA256     string `json:"uki_sha256"`
	Initramfs     string `json:"initramfs"`
	InitrdBytes   int64  `json:"initramfs_bytes"`
	InitrdSHA256  string `json:"initramfs_sha256"`
	InitrdCached  bool   `json:"initramfs_cached"`
	Kernel        string `json:"kernel"`
	KernelBytes   int64  `json:"kernel_bytes"`
	Cmdline       string `json:"cmdline"`
	PCR11         string `json:"pcr11_sha256"`
	Board         string `json:"board"`
	KernelPackage string `json:"kernel_package"`
	AttackSuite   bool   `json:"attack_suite,omitempty"`
}

// osRelease is the UKI's .osrel.
const osRelease = `NAME="Holdfast"
ID=holdfast
PRETTY_NAME="Holdfast write-once backup appliance"
VERSION_ID=0.1
`

// Build fetches the kernel, builds the initramfs and the UKI, writes the
// GPT image and a manifest (image.json) into o.OutDir, and returns what it
// built, including the predicted PCR 11.
func Build(ctx context.Context, o Options) (*Result, error) {
	b := o.Board
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Release && b.TPM.AllowNoTPMTestMode {
		return nil, fmt.Errorf("board %s: %w", b.Name, ErrTestModeBoard)
	}
	if o.Release && o.AttackSuite {
		return nil, errors.New("a release image never carries the attack suite")
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("out dir: %w", err)
	}
	var err error
	if o.KernelCacheDir == "" {
		if o.KernelCacheDir, err = boards.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	if o.InitramfsCacheDir == "" && !o.NoInitramfsCache {
		if o.InitramfsCacheDir, err = initramfs.DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	k, err := boards.FetchKernel(ctx, o.Log, b, o.KernelCacheDir)
	if err != nil {
		return nil, err
	}
	initrd := filepath.Join(o.OutDir, "initramfs.cpio.gz")
	ir, err := initramfs.Build(ctx, initramfs.Options{
		Board: b, Kernel: k, ModuleDir: o.ModuleDir, CacheDir: o.InitramfsCacheDir, AttackSuite: o.AttackSuite, Log: o.Log,
	}, initrd)
	if err != nil {
		return nil, err
	}
	osrel, err := writeTextFile(o.OutDir, "os-release", osRelease)
	if err != nil {
		return nil, err
	}
	cmdline, err := writeTextFile(o.OutDir, "cmdline", b.KernelCmdline())
	if err != nil {
		return nil, err
	}
	in := UKIInputs{Stub: b.EFIStub, OSRel: osrel, Cmdline: cmdline, Linux: k.Image, Initrd: initrd}
	uki := filepath.Join(o.OutDir, "holdfast.efi")
	if err := BuildUKI(ctx, in, uki); err != nil {
		return nil, err
	}
	fromInputs, err := PCR11FromInputs(in)
	if err != nil {
		return nil, err
	}
	fromUKI, err := PCR11FromUKI(uki)
	if err != nil {
		return nil, err
	}
	if fromInputs != fromUKI {
		return nil, fmt.Errorf("pcr 11: the UKI's sections give %s but its inputs give %s (section sizes padded?)", fromUKI, fromInputs)
	}
	img := filepath.Join(o.OutDir, "holdfast.img")
	o.Log.Info("writing image", "path", img)
	if err := WriteImage(img, uki, b.EFIBootFile); err != nil {
		return nil, err
	}
	r := &Result{
		Image: img, UKI: uki, Initramfs: initrd, Kernel: k.Image, Cmdline: b.KernelCmdline(),
		PCR11: fromUKI, Board: b.Name, KernelPackage: b.Kernel.Package + "=" + b.Kernel.Version,
		InitrdBytes: ir.Size, InitrdSHA256: ir.SHA256, InitrdCached: ir.Cached, AttackSuite: o.AttackSuite,
	}
	for _, f := range []struct {
		p    string
		size *int64
		sum  *string
	}{{img, &r.ImageBytes, nil}, {uki, &r.UKIBytes, &r.UKISHA256}, {k.Image, &r.KernelBytes, nil}} {
		fi, err := os.Stat(f.p)
		if err != nil {
			return nil, fmt.Errorf("image result: %w", err)
		}
		*f.size = fi.Size()
		if f.sum != nil {
			if *f.sum, err = fileSHA256(f.p); err != nil {
				return nil, err
			}
		}
	}
	manifest, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.OutDir, "image.json"), append(manifest, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return r, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("sha256: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("sha256 %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
