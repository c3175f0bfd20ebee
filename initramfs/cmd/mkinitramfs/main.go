// Command mkinitramfs builds the Holdfast initramfs for one board:
//
//	mkinitramfs -board qemu-x86_64 -o out/qemu-x86_64/initramfs.cpio.gz
//
// It fetches the board's pinned kernel (for its modules) into the cache and
// prints the archive's size and SHA-256. `make image` does this as part of
// building the disk image; this command is for inspecting the userland.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/initramfs"
)

func main() {
	board := flag.String("board", "qemu-x86_64", "board name")
	out := flag.String("o", "initramfs.cpio.gz", "output file")
	noCache := flag.Bool("no-cache", false, "rebuild even if a cached archive matches")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := hclog.New(&hclog.LoggerOptions{Name: "mkinitramfs", Level: hclog.Info})
	if err := run(ctx, log, *board, *out, !*noCache); err != nil {
		log.Error("failed", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log hclog.Logger, name, out string, cache bool) error {
	b, err := boards.Load(name)
	if err != nil {
		return err
	}
	kdir, err := boards.DefaultCacheDir()
	if err != nil {
		return err
	}
	k, err := boards.FetchKernel(ctx, log, b, kdir)
	if err != nil {
		return err
	}
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working dir: %w", err)
	}
	o := initramfs.Options{Board: b, Kernel: k, ModuleDir: wd, Log: log}
	if cache {
		if o.CacheDir, err = initramfs.DefaultCacheDir(); err != nil {
			return err
		}
	}
	r, err := initramfs.Build(ctx, o, out)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d bytes, sha256 %s, %d modules (cached: %v)\n", r.Path, r.Size, r.SHA256, len(r.Modules), r.Cached)
	return nil
}
