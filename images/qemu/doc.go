// Package qemu runs a Holdfast image the way a board would boot it: under
// OVMF (UEFI) with a private copy of the firmware variables, a software
// TPM 2.0 (swtpm, one process per VM, started and stopped with it), two
// virtio data disks created on first run, user-mode networking with no
// forwarded ports (the guest reaches the host's loopback at 10.0.2.2 and
// nothing reaches the guest), and the serial console on a unix socket that
// `holdfast console` speaks to. QEMU also logs the serial output to a file,
// which the runner follows and copies to a writer (stdout for a person),
// with protocol frames shown as short markers.
//
// KVM is used when /dev/kvm opens; otherwise, or when a KVM guest shows no
// serial output within KVMProgressTimeout, the VM runs under TCG.
//
// Limits: Linux only; one VM per state directory; QEMU, OVMF and swtpm come
// from Debian packages (`make setup`).
package qemu
