// Command holdfast-image builds and runs Holdfast disk images:
//
//	holdfast-image build -board qemu-x86_64 [-out out] [-release]
//	holdfast-image qemu  -board qemu-x86_64 [-out out] [-accel auto|kvm|tcg]
//
// build writes out/BOARD/holdfast.img (plus the UKI, initramfs and
// image.json) and prints the PCR 11 value the UKI will produce. qemu boots
// that image with swtpm and two data disks, shows the serial console here
// and prints the socket `holdfast console push --port` talks to; Ctrl-C
// powers the VM off. `make image` and `make qemu` call these.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/boards"
	"github.com/holdfast-appliance/holdfast/images"
	"github.com/holdfast-appliance/holdfast/images/qemu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := hclog.New(&hclog.LoggerOptions{Name: "holdfast-image", Level: hclog.Info, Output: os.Stderr})
	if err := run(ctx, log, os.Args[1:]); err != nil {
		log.Error("failed", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log hclog.Logger, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: holdfast-image build|qemu -board NAME [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	board := fs.String("board", "qemu-x86_64", "board name: "+fmt.Sprint(boards.Names()))
	out := fs.String("out", "out", "output directory; the image goes to OUT/BOARD/holdfast.img")
	release := fs.Bool("release", false, "refuse boards that allow the TPM-less test mode")
	attack := fs.Bool("attack-suite", false, "build a TEST image with the attack suite (init's `attack` command); refused with -release")
	noCache := fs.Bool("no-cache", false, "rebuild the initramfs even if a cached one matches")
	defAccel, err := qemu.AccelFromEnv()
	if err != nil {
		return err
	}
	accel := fs.String("accel", defAccel, "qemu: auto (KVM if a probe of this host shows it runs the guest, else TCG), kvm or tcg; the default comes from "+qemu.AccelEnv)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	b, err := boards.Load(*board)
	if err != nil {
		return err
	}
	dir := filepath.Join(*out, b.Name)
	switch args[0] {
	case "build":
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("working dir: %w", err)
		}
		r, err := images.Build(ctx, images.Options{
			Board: b, OutDir: dir, ModuleDir: wd, Release: *release, AttackSuite: *attack, NoInitramfsCache: *noCache, Log: log,
		})
		if err != nil {
			return err
		}
		fmt.Printf("image      %s (%d MiB)\n", r.Image, r.ImageBytes>>20)
		fmt.Printf("uki        %s (%d bytes, sha256 %s)\n", r.UKI, r.UKIBytes, r.UKISHA256)
		fmt.Printf("kernel     %s (%d bytes)\n", r.KernelPackage, r.KernelBytes)
		fmt.Printf("initramfs  %s (%d bytes, sha256 %s, cached %v)\n", r.Initramfs, r.InitrdBytes, r.InitrdSHA256, r.InitrdCached)
		fmt.Printf("cmdline    %s\n", r.Cmdline)
		fmt.Printf("PCR 11     sha256:%s  (systemd-stub measurement of .linux .osrel .cmdline .initrd; systemd-measure --phase=)\n", r.PCR11)
		return nil
	case "qemu":
		img := filepath.Join(dir, "holdfast.img")
		if _, err := os.Stat(img); err != nil {
			return fmt.Errorf("%w: run make image BOARD=%s first", err, b.Name)
		}
		vm, err := qemu.Start(ctx, qemu.Config{
			Board: b, Image: img, StateDir: filepath.Join(dir, "vm"), Accel: *accel, Console: os.Stdout, Log: log,
		})
		if err != nil {
			return err
		}
		log.Info("VM running: push a config with", "command", "holdfast console push --port "+vm.SerialSocket+" cfg.hcl", "accel", vm.Accel)
		select {
		case <-ctx.Done():
			log.Info("powering off")
			return vm.Stop(context.Background())
		case <-vm.Done():
			_ = vm.Stop(context.Background())
			return vm.Err()
		}
	default:
		return fmt.Errorf("unknown command %q: want build or qemu", args[0])
	}
}
