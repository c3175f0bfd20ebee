package main

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/images/flash"
)

func (a *app) flashCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "flash IMG DEVICE",
		Short: "Write a Holdfast disk image to a USB stick or other device and verify it",
		Long: `flash writes a disk image made by 'make image' (out/BOARD/holdfast.img) to
DEVICE, a block device such as a USB stick (/dev/sdX, the whole disk, not a
partition), or to a regular file. It then syncs, drops the device's cached
pages and reads the whole written range back, comparing its SHA-256 with the
image's; a mismatch fails with exit code 1.

Before writing a byte it refuses:
  - a device that is mounted, has a mounted partition, or is in use (LVM,
    RAID, device mapper, or any other exclusive claim);
  - a device whose first MiB, or the first MiB of one of its partitions,
    contains "HOLDFAST", the magic of a Holdfast store: it may be a data disk;
  - a device smaller than the image, and the image itself;
  - an existing regular file, unless --force is given.

Writing a block device needs root.`,
		Example: `  holdfast flash out/qemu-x86_64/holdfast.img /dev/sdb
  holdfast flash --force out/pc-x86_64/holdfast.img /tmp/copy.img`,
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.flash(cmd, args[0], args[1], force)
		},
	}
	c.Flags().BoolVar(&force, "force", false, "overwrite DEVICE if it is an existing regular file")
	return c
}

func (a *app) flash(cmd *cobra.Command, img, target string, force bool) error {
	log := a.log
	tty := isTerminal(a.stderr)
	if !tty && !cmd.Flags().Changed("log-level") {
		// Without a progress bar, progress lines at info level are the
		// only sign of life during a long write.
		log = hclog.New(&hclog.LoggerOptions{Name: "holdfast", Level: hclog.Info, Output: a.stderr, Color: hclog.ColorOff})
	}
	opts := flash.Options{Force: force, Log: log.Named("flash")}
	if tty {
		var bar *progressbar.ProgressBar
		opts.Progress = func(phase string, done, total int64) {
			if bar == nil || bar.State().Description != phase {
				if bar != nil {
					_ = bar.Finish()
				}
				bar = progressbar.NewOptions64(total,
					progressbar.OptionSetWriter(a.stderr),
					progressbar.OptionSetDescription(phase),
					progressbar.OptionShowBytes(true),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionClearOnFinish(),
					progressbar.OptionSetPredictTime(true),
				)
			}
			_ = bar.Set64(done)
		}
		defer func() {
			if bar != nil {
				_ = bar.Finish()
			}
		}()
	} else {
		opts.Progress = periodicProgress(opts.Log, 5*time.Second)
	}
	res, err := flash.Flash(cmd.Context(), img, target, opts)
	if err != nil {
		return fmt.Errorf("flash %s to %s: %w", img, target, err)
	}
	fmt.Fprintf(a.stdout, "wrote %s (%d bytes) to %s and read it back: sha256 %s matches\n",
		humanBytes(res.Bytes), res.Bytes, target, res.SHA256)
	return nil
}

// periodicProgress logs progress at most once per interval and at the end
// of each phase, for when stderr is not a terminal.
func periodicProgress(log hclog.Logger, every time.Duration) func(string, int64, int64) {
	var last time.Time
	return func(phase string, done, total int64) {
		if done < total && time.Since(last) < every {
			return
		}
		last = time.Now()
		log.Info("progress", "phase", phase, "bytes", done, "total", total,
			"percent", fmt.Sprintf("%.1f", 100*float64(done)/float64(total)))
	}
}
