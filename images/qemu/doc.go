// Package qemu runs a Holdfast image the way a board would boot it: under
// OVMF or AAVMF (UEFI) with a private copy of the firmware variables
// (padded to the 64 MiB flash banks of the arm "virt" machine), a software
// TPM 2.0 when the board has one (swtpm, one process per VM, started and
// stopped with it), two
// virtio data disks created on first run, user-mode networking with no
// forwarded ports (the guest reaches the host's loopback at 10.0.2.2 and
// nothing reaches the guest), and the serial console on a unix socket that
// `holdfast console` speaks to. QEMU also logs the serial output to a file,
// which the runner follows and copies to a writer (stdout for a person),
// with protocol frames shown as short markers.
//
// The accelerator is decided once per host, not once per VM: under
// AccelAuto a probe boots the board's own kernel under KVM for a few
// seconds (ProbeKVM) and its answer is cached per host boot, QEMU binary
// and kernel. KVM is used when the probe saw the kernel's banner and the
// board's architecture is the host's; otherwise the VM runs under TCG (an
// arm64 "max" CPU then with the faster implementation-defined pointer
// authentication). If a guest the probe let through still exits under KVM
// or prints nothing within Config.KVMSilence, the whole VM (QEMU, swtpm,
// sockets) is torn down and started afresh under TCG; the log says which
// of the two happened. HOLDFAST_ACCEL (AccelFromEnv) lets a person force
// auto, kvm or tcg for the demo, the tests and `make qemu`.
//
// Limits: Linux only; one VM per state directory; QEMU, OVMF, AAVMF and
// swtpm come from Debian packages (`make setup`).
package qemu
