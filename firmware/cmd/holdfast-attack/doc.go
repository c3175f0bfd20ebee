// Command holdfast-attack is the appliance's attack suite, built into test
// images only. After lockdown PID 1 starts it as uid 0 with whatever
// capabilities lockdown leaves it; it then tries every technique of its
// table (see -list) to delete or alter the backup store, to write the data
// disks or the boot medium, to undo lockdown through the kernel, other
// processes, the clock, usermode helpers, signals, EFI variables or the
// network, and reports each one honestly, one line per technique, flushed as
// it goes:
//
//	ATTACK START techniques=N uid=U caps=0x<CapEff>
//	ATTACK NN category name: refused|SUCCEEDED|n/a: detail
//	ATTACK CHANGED <path>: <what>            (integrity differences, at most 50)
//	ATTACK SUMMARY techniques=N refused=R succeeded=S na=A store_changed=false
//
// A technique is "refused" only when its attempt failed and the check of its
// effect (the targeted store files re-read as the owner uid, a file re-read,
// a sysctl read back, PID 1's state...) shows nothing changed; any attempt
// that returns success is "SUCCEEDED", and so is a syscall that got past its
// permission check and failed later for another reason. "n/a" is only for
// absent hardware or kernel features, or when the owner uid cannot be
// assumed. Before the first technique and after the last a child running as
// the owner uid walks the store (every file outside tmp/, wip/, index/,
// state/ and lock: size, mode, owner, SHA-256, inode flags, user.holdfast.*
// xattrs) and any difference sets store_changed=true. The exit status is 0
// when nothing succeeded and the store is unchanged, 1 otherwise, 2 when it
// refuses to run.
//
// The worker adversary (holdfast-attack worker-adversary, worker_linux.go
// and control_linux.go) is a mode of its own, started as the worker by a
// test image's attack-worker command: it plants hostile entries in every
// store with the worker's keys and plays the worker against PID 1's control
// protocol (floods, fakes, a hold it answers without recording).
//
// The techniques that model the network intruder who took over the worker
// run in a child re-executed as the owner uid (-as-owner NAME), and the
// identity techniques run a child as every uid and gid that owns anything
// on the box (-identity-battery NAME). Since nothing after lockdown can
// change its uid, not even this uid-0 program, a test image's PID 1
// starts those children for it (the attack broker, HOLDFAST_ATTACK_BROKER_FD;
// broker_linux.go); without a broker they are started with
// SysProcAttr.Credential. The identity technique setresuid-every-identity
// is what this program can do by itself: try to become each. The
// usermode-helper techniques make the kernel run this same binary through
// /tmp/hf-helper-* symlinks, and when started under such a name it runs in
// helper mode (it reads /tmp/hf-helper.conf, records its capabilities and
// tries to destroy one pack).
//
// Safety: this program really destroys what it can. It refuses to run
// (exit 2) unless -in-vm is given, /etc/holdfast/board exists and PID 1's
// comm is "init" or starts with "holdfast"; helper mode and every internal
// child mode check the same. -list only prints the table and is safe
// anywhere.
//
// Limits: Linux only; numbers have two digits or three (at most 999
// techniques); techniques run one after the other and some are slow (the
// disk fill writes the free space of the data disk, the port scan connects
// to every TCP port of every local address); a technique that works may
// leave the appliance damaged, rebooted or read-only, which is the point.
package main
