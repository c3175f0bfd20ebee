// Command holdfast-init is PID 1 of the Holdfast appliance: the /init of the
// u-root initramfs. It sets up the root file system with u-root's libinit
// (devtmpfs on /dev, /proc, /sys, tmpfs /tmp), loads the board's kernel
// modules (modules.dep in the initramfs comes from depmod at build time),
// prints a banner and one line per boot phase on the serial console through
// go-hclog, and then runs the console: it asks for a config over the serial
// line (package firmware/console) until one is pushed and confirmed.
//
// It never exits (u-root issue #3645: when init exits the kernel panics).
// Every failure is logged and the step retried, and once its work is done
// it idles, reaping orphans.
//
// Limits: this is the boot foundation. TPM unsealing, disks, the maintenance
// window, lockdown and services (boot phases 4-8 of the design brief) are
// announced but not yet done, so the appliance stays in safe mode after a
// config is accepted, and the accepted config is held only in memory.
package main
