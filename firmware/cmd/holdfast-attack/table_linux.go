package main

import (
	"fmt"
	"io"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// technique is one row of the attack table.
type technique struct {
	cat, name, what string
	owner           bool // runs in a child as the owner uid
	mayNA           bool // may be n/a: the hardware or kernel feature may be absent
	run             func(*env) result
}

// categories are the allowed category words.
var categories = map[string]bool{
	"store": true, "owner": true, "mount": true, "disk": true, "device": true, "kernel": true, "process": true,
	"clock": true, "helper": true, "signal": true, "config": true, "efi": true, "network": true, "fill": true,
	"identity": true,
}

// techniques is the table, in the order the techniques run: file attacks
// first, then devices, kernel, processes, clock, helpers, network, the
// disk fill, mounts, SysRq, signals, reboot, and the sealer's death last.
func techniques() []technique {
	simple := func(f func() result) func(*env) result { return func(*env) result { return f() } }
	return []technique{
		// The store, as uid 0 (which cannot even search the owner's 0700 directories).
		{cat: "store", name: "unlink-pack", what: "unlink(2) a sealed pack", run: storeOp(opUnlink(pickPack))},
		{cat: "store", name: "unlink-manifest", what: "unlink(2) a committed manifest", run: storeOp(opUnlink(pickManifest))},
		{cat: "store", name: "unlink-receipt", what: "unlink(2) a receipt", run: storeOp(opUnlink(pickReceipt))},
		{cat: "store", name: "rename-pack", what: "rename a pack beside itself", run: storeOp(opRename(pickPack, toGone))},
		{cat: "store", name: "rename-manifest-into-tmp", what: "rename a manifest into tmp/", run: storeOp(opRename(pickManifest, intoTmp))},
		{cat: "store", name: "rename-store-dir", what: "rename the store directory itself", run: storeOp(opRenameStore)},
		{cat: "store", name: "truncate-pack", what: "truncate(2) a pack to 0", run: storeOp(opTruncate(pickPack))},
		{cat: "store", name: "otrunc-manifest", what: "open(O_WRONLY|O_TRUNC) a manifest", run: storeOp(opOpenTrunc(pickManifest))},
		{cat: "store", name: "overwrite-pack", what: "open a pack for writing, pwrite zeros at 0", run: storeOp(opOverwrite(pickPack))},
		{cat: "store", name: "append-pack", what: "open(O_APPEND) a pack and write", run: storeOp(opAppend(pickPack))},
		{cat: "store", name: "append-manifest", what: "open(O_APPEND) a manifest and write", run: storeOp(opAppend(pickManifest))},
		{cat: "store", name: "mmap-write-pack", what: "mmap(MAP_SHARED, PROT_WRITE) a pack, flip a byte, msync", run: storeOp(opMmapWrite(pickPack))},
		{cat: "store", name: "punch-hole-pack", what: "fallocate(PUNCH_HOLE) the first 4 KiB of a pack", run: storeOp(opPunchHole(pickPack))},
		{cat: "store", name: "removeall-store", what: "os.RemoveAll of the store", run: storeOp(opRemoveAll)},
		{cat: "store", name: "link-pack-into-tmp", what: "link(2) a pack into tmp/, then write through the link", run: storeOp(opLinkIntoTmp(pickPack))},
		{cat: "store", name: "exchange-packs", what: "renameat2(RENAME_EXCHANGE) of two packs", run: storeOp(opExchange)},
		{cat: "store", name: "rename-over-manifest", what: "create a file in tmp/ and rename it over a manifest", run: storeOp(opRenameOver(pickManifest))},
		{cat: "store", name: "clear-immutable-pack", what: "FS_IOC_SETFLAGS without FS_IMMUTABLE_FL on a pack", run: storeOp(opClearFlag(pickPack, flagImmutable))},
		{cat: "store", name: "clear-append-snapshots", what: "FS_IOC_SETFLAGS without FS_APPEND_FL on snapshots/", run: storeOp(opClearFlag(pickSnapDir, flagAppend))},
		{cat: "store", name: "fssetxattr-clear-immutable", what: "FS_IOC_FSSETXATTR without FS_XFLAG_IMMUTABLE on a pack", run: storeOp(opFsxattrClear(pickPack))},
		{cat: "store", name: "setxattr-retain-until", what: "setxattr user.holdfast.retain_until to 2000 on a manifest", run: storeOp(opSetxattr(pickManifest))},
		{cat: "store", name: "removexattr-retain-until", what: "removexattr user.holdfast.retain_until of a manifest", run: storeOp(opRemovexattr(pickManifest))},
		{cat: "store", name: "chmod-chown-pack", what: "chmod 0666 and chown 0:0 a pack", run: storeOp(opChmodChown(pickPack))},

		// The store, as the owner uid: the intruder who took over the worker.
		{cat: "owner", name: "unlink-pack-as-owner", what: "unlink(2) a pack as uid 1000", owner: true, run: storeOp(opUnlink(pickPack))},
		{cat: "owner", name: "unlink-manifest-as-owner", what: "unlink(2) a manifest as uid 1000", owner: true, run: storeOp(opUnlink(pickManifest))},
		{cat: "owner", name: "rename-manifest-as-owner", what: "rename a manifest into tmp/ as uid 1000", owner: true, run: storeOp(opRename(pickManifest, intoTmp))},
		{cat: "owner", name: "truncate-pack-as-owner", what: "truncate(2) a pack as uid 1000", owner: true, run: storeOp(opTruncate(pickPack))},
		{cat: "owner", name: "overwrite-pack-as-owner", what: "open a pack for writing and pwrite zeros as uid 1000", owner: true, run: storeOp(opOverwrite(pickPack))},
		{cat: "owner", name: "removeall-store-as-owner", what: "os.RemoveAll of the store as uid 1000", owner: true, run: storeOp(opRemoveAll)},
		{cat: "owner", name: "clear-immutable-as-owner", what: "FS_IOC_SETFLAGS without FS_IMMUTABLE_FL on a pack as uid 1000", owner: true, run: storeOp(opClearFlag(pickPack, flagImmutable))},
		{cat: "owner", name: "clear-append-as-owner", what: "FS_IOC_SETFLAGS without FS_APPEND_FL on snapshots/ as uid 1000", owner: true, run: storeOp(opClearFlag(pickSnapDir, flagAppend))},
		{cat: "owner", name: "setxattr-retain-until-as-owner", what: "setxattr user.holdfast.retain_until to 2000 as uid 1000", owner: true, run: storeOp(opSetxattr(pickManifest))},
		{cat: "owner", name: "removexattr-retain-until-as-owner", what: "removexattr user.holdfast.retain_until as uid 1000", owner: true, run: storeOp(opRemovexattr(pickManifest))},
		{cat: "owner", name: "chmod-snapshots-as-owner", what: "chmod 0 snapshots/ (append-only) as uid 1000", owner: true, run: storeOp(opChmod(pickSnapDir, 0))},
		{cat: "owner", name: "rename-over-manifest-as-owner", what: "create a file in tmp/ and rename it over a manifest as uid 1000", owner: true, run: storeOp(opRenameOver(pickManifest))},
		{cat: "owner", name: "link-pack-into-tmp-as-owner", what: "link(2) a pack into tmp/ and write it as uid 1000", owner: true, run: storeOp(opLinkIntoTmp(pickPack))},
		{cat: "owner", name: "inject-sealer-as-owner", what: "PTRACE_ATTACH, process_vm_writev, /proc/PID/mem write on the sealer (its own uid since issue 16)", owner: true, run: (*env).injectSealer},
		{cat: "owner", name: "forge-sealer-requests-as-owner", what: "take the worker's sealer socket (pidfd_getfd) and send forged requests", owner: true, run: (*env).forgeResult},

		// The config partition.
		{cat: "config", name: "delete-sealed", what: "unlink master.sealed, config.sealed, clock.anchor, time.a, time.b", run: (*env).configDelete},
		{cat: "config", name: "truncate-sealed", what: "truncate master.sealed, config.sealed, clock.anchor, time.a, time.b", run: (*env).configTruncate},
		{cat: "config", name: "overwrite-sealed", what: "open for write and overwrite master.sealed, config.sealed, clock.anchor, time.a, time.b", run: (*env).configOverwrite},

		// Device nodes.
		{cat: "device", name: "mknod-data-disk", what: "mknod a block node with a data disk's numbers in /tmp, open it for write", run: (*env).mknodResult},
		{cat: "device", name: "chmod-chown-disk-node", what: "chmod 0666 and chown 0:0 the data and boot disk nodes", run: (*env).chmodChownNodes},
		{cat: "device", name: "raw-memory-nodes", what: "open /dev/mem, /dev/kmem, /dev/port for write", mayNA: true, run: simple(rawMemoryResult)},
		{cat: "device", name: "iopl-ioperm", what: "iopl(3) and ioperm on the CMOS ports (x86 only)", mayNA: true, run: simple(ioPortResult)},

		// Root becoming every uid and gid that owns anything (identity_linux.go).
		{cat: "identity", name: "setresuid-every-identity", what: "as uid 0: setgroups, setresgid, setresuid to every uid and gid owning anything, 65534 and the owner; capset and ambient raise of SETUID", run: (*env).setresuidEveryIdentity},
		{cat: "identity", name: "chmod-chown-nodes-every-identity", what: "as every identity: chmod 0666 and chown to itself every node in /dev and every disk, TPM, serial, RTC, memory node path", run: func(e *env) result { return e.asEveryIdentity("chmod-chown-nodes") }},
		{cat: "identity", name: "write-block-devices-every-identity", what: "as every identity: open O_WRONLY and O_RDWR every block device the kernel lists", run: func(e *env) result { return e.asEveryIdentity("write-block-devices") }},
		{cat: "identity", name: "open-tpm-serial-every-identity", what: "as every identity: open the TPM, serial lines, console, RTC, watchdog, /dev/mem, /dev/port", run: func(e *env) result { return e.asEveryIdentity("open-tpm-serial") }},
		{cat: "identity", name: "mknod-every-identity", what: "as every identity: mknod a data disk, the boot disk, tpmrm0 and ttyS0 in /dev and /tmp, open read-write", run: func(e *env) result { return e.asEveryIdentity("mknod") }},
		{cat: "identity", name: "store-every-identity", what: "as every identity, each role with its groups: unlink, truncate, write, clear flags, chmod a sealed pack and manifest, rename the manifest, create in tmp/ and flock the writer's lock (not the owner), on every data disk's store", run: func(e *env) result { return e.asEveryIdentity("store") }},
		{cat: "identity", name: "config-every-identity", what: "as every identity: unlink, truncate, overwrite the config partition's sealed files", run: func(e *env) result { return e.asEveryIdentity("config") }},
		{cat: "identity", name: "signal-ptrace-every-identity", what: "as every identity: kill(pid, 0) and PTRACE_ATTACH of PID 1, the sealer, the worker and the export not of its uid", run: func(e *env) result { return e.asEveryIdentity("signal-ptrace") }},
		{cat: "identity", name: "channels-every-identity", what: "as every identity: reopen /proc/PID/fd/* and pidfd_getfd fds 0-15 of PID 1, the sealer, the worker and the export not of its uid (the control channel and the sealer sockets); connect to every named unix socket", run: func(e *env) result { return e.asEveryIdentity("channels") }},
		{cat: "identity", name: "net-every-identity", what: "as every identity: raw and packet sockets, bind TCP and UDP ports 22, 80, 443, 873, add an address and a route and set lo down by netlink, open ip_unprivileged_port_start and ip_forward for writing", run: func(e *env) result { return e.asEveryIdentity("net") }},
		{cat: "identity", name: "mount-every-identity", what: "as every identity: devtmpfs on /tmp, tmpfs and bind over /dev, remount /dev read-write", run: func(e *env) result { return e.asEveryIdentity("mount") }},

		// Raw disks and the boot medium.
		{cat: "disk", name: "mke2fs-data-disks", what: "run mke2fs -F -F on each data disk and partition", run: (*env).mke2fsResult},
		{cat: "disk", name: "write-data-disks", what: "open each data disk and partition O_WRONLY, write zeros at 0 and 1024", run: (*env).writeDataDisks},
		{cat: "disk", name: "odirect-write-data-disk", what: "O_DIRECT write of zeros at 0 on the first data disk", run: func(e *env) result { return writeDevResult(e.cfg.dataDisks[0], unix.O_DIRECT, 0) }},
		{cat: "disk", name: "write-boot-disk", what: "write zeros over the boot disk's partition table", run: func(e *env) result { return writeDevResult(e.cfg.bootDisk, 0, 0) }},
		{cat: "disk", name: "write-esp", what: "write zeros over the boot sector of the boot disk's first partition (ESP)", run: func(e *env) result { return writeDevResult(partNode(e.cfg.bootDisk, 1), 0, 0) }},
		{cat: "disk", name: "blkdiscard", what: "ioctl BLKDISCARD of the first MiB of a data disk", run: func(e *env) result { return blkRangeResult(e.cfg.dataDisks[0], "BLKDISCARD", unix.BLKDISCARD) }},
		{cat: "disk", name: "blksecdiscard", what: "ioctl BLKSECDISCARD of the first MiB of a data disk", run: func(e *env) result { return blkRangeResult(e.cfg.dataDisks[0], "BLKSECDISCARD", unix.BLKSECDISCARD) }},
		{cat: "disk", name: "blkzeroout", what: "ioctl BLKZEROOUT of the first MiB of a data disk", run: func(e *env) result { return blkRangeResult(e.cfg.dataDisks[0], "BLKZEROOUT", unix.BLKZEROOUT) }},
		{cat: "disk", name: "sg-io-ata-secure-erase", what: "SG_IO ATA PASS-THROUGH(16) SECURITY ERASE PREPARE + UNIT on a data disk", run: func(e *env) result {
			return ioctlOnDev(e.cfg.dataDisks[0], unix.O_RDWR, "SG_IO ATA SECURITY ERASE", ataSecureErase)
		}},
		{cat: "disk", name: "nvme-format", what: "NVME_IOCTL_ADMIN_CMD Format NVM on /dev/nvme0 (else a data disk)", run: (*env).nvmeFormatResult},
		{cat: "disk", name: "blkpg-del-boot-part", what: "ioctl BLKPG delete partition 1 of the boot disk", run: (*env).blkpgResult},
		{cat: "disk", name: "blkrrpart", what: "ioctl BLKRRPART on a data disk and the boot disk", run: (*env).blkrrpartResult},

		// The kernel.
		{cat: "kernel", name: "init-module", what: "init_module with a .ko from -modules-dir", run: (*env).initModuleResult},
		{cat: "kernel", name: "finit-module", what: "finit_module with a .ko from -modules-dir", run: (*env).finitModuleResult},
		{cat: "kernel", name: "kexec-load", what: "kexec_load of a one-segment image", run: simple(kexecLoadResult)},
		{cat: "kernel", name: "kexec-file-load", what: "kexec_file_load of a file (refusal before parsing)", run: (*env).kexecFileLoadResult},
		{cat: "kernel", name: "bpf-prog-load", what: "bpf(BPF_PROG_LOAD) of a trivial socket filter", run: simple(bpfResult)},
		{cat: "kernel", name: "perf-event-open", what: "perf_event_open on PID 1 and on all of CPU 0", run: simple(perfResult)},
		{cat: "kernel", name: "userns-mount-store", what: "unshare a user+mount namespace (child) and mount tmpfs over the store inside", run: (*env).usernsResult},
		{cat: "kernel", name: "open-by-handle-write", what: "name_to_handle_at of a pack (else via the owner), open_by_handle_at O_RDWR", run: (*env).openByHandleResult},
		{cat: "kernel", name: "sysctl-reopen-doors", what: "write 0 to modules_disabled, yama/ptrace_scope, kexec_load_disabled; full usermodehelper bset/inheritable", run: (*env).sysctlDoorsResult},

		// Other processes.
		{cat: "process", name: "ptrace-attach", what: "PTRACE_ATTACH to PID 1, the sealer and the worker", run: func(e *env) result {
			return combine(ptraceResult(e.pid1()), ptraceResult(e.sealer()), ptraceResult(e.worker()))
		}},
		{cat: "process", name: "process-vm-writev", what: "process_vm_writev into PID 1 and the sealer", run: func(e *env) result {
			return combine(vmWriteResult(e.pid1()), vmWriteResult(e.sealer()))
		}},
		{cat: "process", name: "proc-mem-write", what: "open /proc/1/mem and /proc/SEALER/mem for write", run: func(e *env) result {
			return combine(procMemResult(e.pid1()), procMemResult(e.sealer()))
		}},
		{cat: "process", name: "proc-fd-steal", what: "open every /proc/PID/fd/N of PID 1, the sealer and the worker", run: func(e *env) result {
			return combine(procFDResult(e.pid1()), procFDResult(e.sealer()), procFDResult(e.worker()))
		}},
		{cat: "process", name: "pidfd-getfd", what: "pidfd_open + pidfd_getfd of every fd of PID 1, the sealer and the worker", run: func(e *env) result {
			return combine(e.pidfdResult(e.pid1()), e.pidfdResult(e.sealer()), e.pidfdResult(e.worker()))
		}},
		{cat: "process", name: "forge-sealer-requests", what: "send forged requests (clear verb, ../ traversal, absolute path) over a stolen sealer socket", run: (*env).forgeResult},

		// The clock.
		{cat: "clock", name: "set-realtime", what: "clock_settime(CLOCK_REALTIME) and settimeofday 10 years ahead", run: simple(setRealtimeResult)},
		{cat: "clock", name: "adjtimex-setoffset", what: "adjtimex(ADJ_SETOFFSET) 10 years ahead", run: simple(adjtimexResult)},
		{cat: "clock", name: "rtc-set-time", what: "ioctl RTC_SET_TIME on /dev/rtc0, 10 years ahead", mayNA: true, run: simple(rtcResult)},

		// Kernel usermode helpers, which run as full root.
		{cat: "helper", name: "core-pattern", what: "core_pattern = |/tmp/hf-helper-core, then crash a child", run: func(e *env) result {
			return e.helperTechnique("core", "/proc/sys/kernel/core_pattern", "|", triggerCore)
		}},
		{cat: "helper", name: "modprobe", what: "kernel.modprobe = /tmp/hf-helper-modprobe, then socket() of unknown families and exec of an unknown format", run: func(e *env) result {
			return e.helperTechnique("modprobe", "/proc/sys/kernel/modprobe", "", triggerModprobe)
		}},
		{cat: "helper", name: "uevent-helper", what: "/sys/kernel/uevent_helper = /tmp/hf-helper-uevent, then trigger a uevent", mayNA: true, run: func(e *env) result {
			return e.helperTechnique("uevent", "/sys/kernel/uevent_helper", "", triggerUevent)
		}},

		// EFI variables.
		{cat: "efi", name: "efi-bootnext", what: "write BootNext and BootOrder through efivarfs (mounting it if needed)", mayNA: true, run: (*env).efiBootNextResult},

		// The network.
		{cat: "network", name: "port-scan", what: "connect to every TCP port of 127.0.0.1 and of every interface address", run: simple(portScanResult)},
		{cat: "network", name: "http-put", what: "HTTP PUT to 127.0.0.1:9000 and :443", run: simple(httpPutResult)},

		// Filling the data disk.
		{cat: "fill", name: "fill-tmp-as-owner", what: "as uid 1000, write zeros into tmp/ until ENOSPC; check nothing committed is lost; remove", owner: true, run: func(e *env) result {
			return e.fillResult(filepath.Join(e.cfg.store, "tmp", "hf-attack-fill"))
		}},
		{cat: "fill", name: "fill-mountroot-as-root", what: "as uid 0, write zeros beside the store until ENOSPC; check nothing committed is lost; remove", run: func(e *env) result {
			return e.fillResult(filepath.Join(e.dataMount(), "hf-attack-fill-root"))
		}},

		// Mounts (after the file attacks, which they could disturb).
		{cat: "mount", name: "remount-data-ro", what: "mount(MS_REMOUNT|MS_RDONLY) of the data disk", run: (*env).remountDataRO},
		{cat: "mount", name: "remount-config-rw", what: "mount(MS_REMOUNT) of the config partition read-write", run: (*env).remountConfigRW},
		{cat: "mount", name: "umount-data", what: "umount the data disk", run: func(e *env) result { return e.umountResult(0, "umount") }},
		{cat: "mount", name: "lazy-umount-data", what: "umount(MNT_DETACH) the data disk", run: func(e *env) result { return e.umountResult(unix.MNT_DETACH, "lazy umount") }},
		{cat: "mount", name: "tmpfs-over-store", what: "mount a tmpfs over the store directory", run: func(e *env) result {
			return e.mountOver("tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m", "mount tmpfs over the store")
		}},
		{cat: "mount", name: "bind-over-store", what: "bind-mount /tmp over the store directory", run: func(e *env) result {
			return e.mountOver("/tmp", "", unix.MS_BIND, "", "bind-mount /tmp over the store")
		}},
		{cat: "mount", name: "devtmpfs", what: "mount a fresh devtmpfs in /tmp and open a data disk there", run: (*env).devtmpfsResult},
		{cat: "mount", name: "efivarfs", what: "mount efivarfs in /tmp", run: func(*env) result { return mountAt("efivarfs", "/tmp/hf-attack-efivarfs-mnt", nil) }},
		{cat: "mount", name: "fifreeze", what: "ioctl FIFREEZE on the data disk's mount root (thawed at once)", run: (*env).fifreezeResult},
		{cat: "mount", name: "swapon", what: "swapon a swap file on the data disk (else in /tmp)", run: (*env).swaponResult},

		// Near the end: SysRq, signals to PID 1, reboot, the sealer's death.
		{cat: "kernel", name: "sysrq-remount-ro", what: "write 'u' to /proc/sysrq-trigger (emergency remount read-only)", mayNA: true, run: simple(sysrqResult)},
		{cat: "signal", name: "all-signals-pid1", what: "send signals 1-31 (but KILL and STOP) to PID 1, checking it after each", run: simple(signalsResult)},
		{cat: "signal", name: "kill-stop-pid1", what: "send SIGKILL and SIGSTOP to PID 1", run: simple(killStopResult)},
		{cat: "kernel", name: "reboot", what: `reboot(RESTART2, "init=/bin/sh") and reboot(KEXEC)`, run: simple(rebootResult)},
		{cat: "signal", name: "kill-sealer", what: "SIGKILL the sealer (as uid 0, else as the owner); PID 1 must live and the store stay unchanged", run: (*env).killSealerResult},
	}
}

// findTechnique looks a technique up by name.
func findTechnique(name string) *technique {
	ts := techniques()
	for i := range ts {
		if ts[i].name == name {
			return &ts[i]
		}
	}
	return nil
}

// printList prints the table for -list.
func printList(w io.Writer, ts []technique) {
	for i, t := range ts {
		who := "uid 0"
		switch {
		case t.owner:
			who = "owner"
		case t.cat == "identity" && t.name != "setresuid-every-identity":
			who = "each id"
		}
		fmt.Fprintf(w, "%02d %-8s %-34s [%s] %s\n", i+1, t.cat, t.name, who, t.what)
	}
}
