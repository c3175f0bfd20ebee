// Package initramfs builds the appliance's userland: a gzip-compressed
// newc cpio made with u-root's mkuimage (uimage.Create) that holds
// holdfast-init as /init (built for the board's architecture), the board's
// kernel modules with the modules.dep that depmod makes for exactly those
// modules, and /etc/holdfast/board naming the board.
//
// Same inputs, same bytes: mkuimage zeroes mtimes, owners and inode numbers
// and writes entries sorted; Go builds with -trimpath, no build ID and no VCS
// stamp; gzip is written with no name and no time. Results are cached under
// ${XDG_CACHE_HOME:-$HOME/.cache}/holdfast/initramfs, keyed by the hash of
// the init binary (built first through Go's own build cache), the board and
// the kernel package, so an unchanged rebuild takes seconds.
//
// Limits: no u-root commands are included (the appliance needs none yet);
// modules that Debian builds into the kernel are skipped; a module the
// kernel package lacks is an error. e2fsprogs' mke2fs and the libraries it
// links are copied from the build host (tools.go), so the initramfs bytes
// also depend on the host's e2fsprogs and libc packages, and an image for
// another architecture has no mke2fs.
package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"

	"github.com/holdfast-appliance/holdfast/boards"
)

// InitPackage is the Go package built as /init.
const InitPackage = "github.com/holdfast-appliance/holdfast/firmware/cmd/holdfast-init"

// AttackPackage is the test-only attack program (firmware/cmd/holdfast-attack),
// built into /bin only with Options.AttackSuite.
const AttackPackage = "github.com/holdfast-appliance/holdfast/firmware/cmd/holdfast-attack"

// AttackSuiteTag is the build tag that gives the init of a test image its
// `attack` console command (firmware/appliance/attack_suite_linux.go).
const AttackSuiteTag = "holdfast_attack_suite"

// formatVersion changes when the layout of the initramfs changes, so that
// cached archives from an older layout are not reused.
const formatVersion = "holdfast-initramfs-2"

// Options say what to build.
type Options struct {
	Board  *boards.Board
	Kernel *boards.KernelFiles
	// ModuleDir is the root of the Go module holding InitPackage.
	ModuleDir string
	// CacheDir holds built archives; empty disables the cache.
	CacheDir string
	// AttackSuite builds a TEST image: init gets the `attack` console
	// command and /bin/holdfast-attack is included. Never for a release.
	AttackSuite bool
	Log         hclog.Logger
}

// Result describes a built initramfs.
type Result struct {
	Path    string // the .cpio.gz
	SHA256  string
	Size    int64
	Modules []string // module files included, relative to lib/modules/<release>
	Cached  bool
}

// DefaultCacheDir is ${XDG_CACHE_HOME:-$HOME/.cache}/holdfast/initramfs.
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("initramfs cache dir: %w", err)
	}
	return filepath.Join(dir, "holdfast", "initramfs"), nil
}

// Build builds the initramfs for o.Board and writes it to out.
func Build(ctx context.Context, o Options, out string) (*Result, error) {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	tmp, err := os.MkdirTemp("", "holdfast-initramfs-")
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer os.RemoveAll(tmp)

	staging := filepath.Join(tmp, "root")
	mods, err := stageModules(ctx, o, staging)
	if err != nil {
		return nil, err
	}
	tools, err := stageTools(ctx, o, staging)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(staging, "etc", "holdfast"), 0o755); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(staging, "etc", "holdfast", "board"), []byte(o.Board.Name+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}

	key, err := cacheKey(ctx, o, tmp, staging)
	if err != nil {
		return nil, err
	}
	if o.CacheDir != "" {
		cached := filepath.Join(o.CacheDir, key+".cpio.gz")
		if _, err := os.Stat(cached); err == nil {
			o.Log.Info("initramfs cached", "key", key[:16])
			if err := copyFile(cached, out); err != nil {
				return nil, err
			}
			return finish(out, mods, true)
		}
	}

	cpioPath := filepath.Join(tmp, "initramfs.cpio")
	buildTmp := filepath.Join(tmp, "build")
	if err := os.Mkdir(buildTmp, 0o755); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	l := llog.New(slog.LevelInfo, func(format string, v ...any) {
		o.Log.Debug("mkuimage: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
	})
	o.Log.Info("building initramfs with mkuimage", "board", o.Board.Name, "init", InitPackage)
	err = uimage.Create(l,
		uimage.WithTempDir(buildTmp),
		uimage.WithReplaceEnv(goEnv(o)),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithBinaryCommandsOpts(buildOpts(o.AttackSuite), packages(o.AttackSuite)...),
		uimage.WithInit("holdfast-init"),
		uimage.WithFiles(filesArgs(staging, tools)...),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(cpioPath),
	)
	if err != nil {
		return nil, fmt.Errorf("mkuimage: %w", err)
	}
	if err := gzipFile(cpioPath, out); err != nil {
		return nil, err
	}
	if o.CacheDir != "" {
		if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("initramfs cache: %w", err)
		}
		if err := copyFile(out, filepath.Join(o.CacheDir, key+".cpio.gz")); err != nil {
			return nil, err
		}
	}
	return finish(out, mods, false)
}

// filesArgs are mkuimage's "host:archive" file arguments: the staged
// module tree, the board file, and each staged tool file.
func filesArgs(staging string, tools []string) []string {
	args := []string{
		filepath.Join(staging, "lib", "modules") + ":lib/modules",
		filepath.Join(staging, "etc", "holdfast") + ":etc/holdfast",
	}
	for _, t := range tools {
		args = append(args, filepath.Join(staging, t)+":"+t)
	}
	return args
}

func finish(out string, mods []string, cached bool) (*Result, error) {
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	s := sha256.Sum256(b)
	return &Result{Path: out, SHA256: hex.EncodeToString(s[:]), Size: int64(len(b)), Modules: mods, Cached: cached}, nil
}

func goEnv(o Options) *golang.Environ {
	env := golang.Default(golang.WithGOOS("linux"), golang.WithGOARCH(o.Board.Arch), golang.WithWorkingDir(o.ModuleDir))
	env.CgoEnabled = false
	return env
}

// buildOpts are mkuimage's reproducible defaults (-trimpath, -ldflags
// "-s -w -buildid=") plus no VCS stamp, so a dirty tree gives the same bytes,
// and the attack-suite tag for a test image.
func buildOpts(attack bool) *golang.BuildOpts {
	return &golang.BuildOpts{ExtraArgs: append([]string{"-buildvcs=false"}, tagArgs(attack)...)}
}

func tagArgs(attack bool) []string {
	if attack {
		return []string{"-tags=" + AttackSuiteTag}
	}
	return nil
}

// packages are the Go commands in /bin.
func packages(attack bool) []string {
	if attack {
		return []string{InitPackage, AttackPackage}
	}
	return []string{InitPackage}
}

// cacheKey builds the init binary through Go's build cache with the flags
// mkuimage uses and hashes it with everything else that goes in.
func cacheKey(ctx context.Context, o Options, tmp, staging string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s %s\n", formatVersion, o.Board.Name, o.Board.Kernel.Package, o.Board.Kernel.Version)
	for i, pkg := range packages(o.AttackSuite) {
		bin := filepath.Join(tmp, fmt.Sprintf("key-%d", i))
		args := append([]string{"build", "-o", bin, "-gcflags=all=-l", "-ldflags", "-s -w -buildid=", "-trimpath", "-buildvcs=false"}, tagArgs(o.AttackSuite)...)
		cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
		cmd.Dir = o.ModuleDir
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+o.Board.Arch, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w: %s", pkg, err, out)
		}
		fmt.Fprintf(h, "%s\n", pkg)
		if err := hashFile(h, bin); err != nil {
			return "", err
		}
	}
	err := filepath.WalkDir(staging, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(staging, p)
		fmt.Fprintf(h, "\n%s\n", rel)
		return hashFile(h, p)
	})
	if err != nil {
		return "", fmt.Errorf("initramfs cache key: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("hash %s: %w", p, err)
	}
	return nil
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	zw, err := gzip.NewWriterLevel(out, gzip.BestCompression) // no name, zero mtime
	if err != nil {
		out.Close()
		return fmt.Errorf("compress: %w", err)
	}
	if _, err := io.Copy(zw, in); err != nil {
		out.Close()
		return fmt.Errorf("compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		out.Close()
		return fmt.Errorf("compress: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	return nil
}

// modName normalises a module name or file name: "virtio-rng.ko" and
// "virtio_rng" are the same module.
func modName(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

// stageModules copies the board's modules and their dependencies into
// staging/lib/modules/<release> and runs depmod there.
func stageModules(ctx context.Context, o Options, staging string) ([]string, error) {
	k := o.Kernel
	rel := k.Release
	// depmod on the unpacked package (Debian ships no modules.dep).
	if _, err := os.Stat(filepath.Join(k.ModulesDir, "modules.dep")); err != nil {
		if out, err := exec.CommandContext(ctx, "depmod", "-b", k.Root, rel).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("depmod -b %s %s: %w: %s", k.Root, rel, err, out)
		}
	}
	deps, err := readDeps(filepath.Join(k.ModulesDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	builtin, err := readBuiltin(filepath.Join(k.ModulesDir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	byName := map[string]string{}
	for file := range deps {
		byName[modName(file)] = file
	}
	need := map[string]bool{}
	var add func(file string)
	add = func(file string) {
		if need[file] {
			return
		}
		need[file] = true
		for _, d := range deps[file] {
			add(d)
		}
	}
	for _, m := range o.Board.Modules {
		n := modName(m)
		if file, ok := byName[n]; ok {
			add(file)
			continue
		}
		if builtin[n] {
			o.Log.Debug("module is built in", "module", m)
			continue
		}
		return nil, fmt.Errorf("board %s: module %q is neither in %s nor built into kernel %s", o.Board.Name, m, o.Board.Kernel.Package, rel)
	}
	dstDir := filepath.Join(staging, "lib", "modules", rel)
	if err := os.MkdirAll(dstDir, 0o755); err != nil {
		return nil, fmt.Errorf("stage modules: %w", err)
	}
	var files []string
	for f := range need {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dstDir, f)), 0o755); err != nil {
			return nil, fmt.Errorf("stage modules: %w", err)
		}
		if err := copyFile(filepath.Join(k.ModulesDir, f), filepath.Join(dstDir, f)); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if err := copyFile(filepath.Join(k.ModulesDir, f), filepath.Join(dstDir, f)); err != nil {
			return nil, err
		}
	}
	if out, err := exec.CommandContext(ctx, "depmod", "-b", staging, rel).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("depmod -b %s %s: %w: %s", staging, rel, err, out)
	}
	// Keep only what the appliance's module loader reads, so that the
	// archive does not depend on depmod's binary index formats.
	keep := map[string]bool{"modules.dep": true, "modules.builtin": true, "modules.alias": true, "modules.order": true}
	entries, err := os.ReadDir(dstDir)
	if err != nil {
		return nil, fmt.Errorf("stage modules: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() && !keep[e.Name()] {
			if err := os.Remove(filepath.Join(dstDir, e.Name())); err != nil {
				return nil, fmt.Errorf("stage modules: %w", err)
			}
		}
	}
	return files, nil
}

// readDeps parses modules.dep: "path: dep dep ...".
func readDeps(p string) (map[string][]string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	deps := map[string][]string{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		file, rest, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		deps[file] = strings.Fields(rest)
	}
	return deps, s.Err()
}

func readBuiltin(p string) (map[string]bool, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("modules.builtin: %w", err)
	}
	m := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" {
			m[modName(line)] = true
		}
	}
	return m, nil
}
