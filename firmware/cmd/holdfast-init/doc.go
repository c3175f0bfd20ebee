// Command holdfast-init is PID 1 of the Holdfast appliance: the /init of the
// u-root initramfs. It sets up the root file system with u-root's libinit
// (devtmpfs on /dev, /proc, /sys, tmpfs /tmp), loads the board's kernel
// modules (modules.dep in the initramfs comes from depmod at build time),
// prints a banner and one line per boot phase on the serial console through
// go-hclog, reads PCR 11, and hands over to package firmware/appliance for
// phases 3 to 8 (config, keys, disks, maintenance, lockdown, services) and
// the console commands.
//
// It never exits (u-root issue #3645: when init exits the kernel panics).
// Every failure is logged and the step retried.
//
// Limits: a failure of the console link restarts the whole sequence after
// a pause, which finds the config partition already mounted and stays in
// safe mode until the next boot.
package main
