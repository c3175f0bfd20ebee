// Package appliance is PID 1's part of the appliance's life after the
// board is up: boot phases 3 to 8 of the design brief (Run reads as that
// sequence), the console commands, lockdown and the maintenance window.
// PID 1 (firmware/cmd/holdfast-init) calls Run once the kernel modules are
// loaded and the console is open. The processes it starts are elsewhere:
// firmware/roles starts them and holds the small roles (sealer, export,
// DHCP client), firmware/worker is the worker. This package imports
// nothing of the worker.
//
//	| phase         | what happens                                          | on failure            |
//	|---------------|-------------------------------------------------------|-----------------------|
//	| 3 config      | mount the config partition; read config.sealed, or    | safe mode             |
//	|               | ask for a config on the console (first boot)          |                       |
//	| 4 keys        | extend PCR 15 with config.sealed's digest, unseal the | safe mode: the        |
//	|               | master key, cap PCR 15; first boot: make the key,     | recovery key unlocks  |
//	|               | seal it, show the paper recovery key once             |                       |
//	| 5 disks       | classify data disks; mount Holdfast disks (read-only  | wait at the console   |
//	|               | when a disk fails writes); a blank disk is formatted  | (never format unasked)|
//	|               | only when the operator types its serial number        |                       |
//	|               | ("format SERIAL")                                     |                       |
//	| 6 maintenance | open the store on each disk (journal recovery), bring | disk left out, alert; |
//	|               | the disks level, repair, advance the trusted time T,  | no T: prune skipped,  |
//	|               | prune with T, copy-disk and mirror-disk requests      | alert                 |
//	| 7 lockdown    | drop powers (lockdown_linux.go), one sealer per disk, | alert; no pulls       |
//	|               | the worker                                            |                       |
//	| 8 services    | DHCP, then pulls on each source's schedule; console   | logged, retried       |
//	|               | commands keep working                                 |                       |
//	|               | and the maintenance reboot back into phase 6 on the   | busy: waits, retries  |
//	|               | config's schedule (maintreboot_linux.go)              | every 10 minutes      |
//
// Safe mode: nothing is mounted, formatted, written or deleted on any data
// disk; the console answers status and unlock (the paper recovery key,
// which reseals the key to this boot and continues).
//
// PID 1 and the worker talk only through firmware/control (docs/control.md):
// typed, bounded requests, errors as kinds; PID 1 acts only on what it
// expects and checks what the worker reports against what it knows (the
// configured sources, the sealed manifests it digests itself for receipts).
// Nothing the worker says makes PID 1 write the config partition.
//
// The store may be on two data disks (mirror_linux.go, with the worker's
// part in firmware/worker; docs/mirror.md).
//
// Limits: two data disks are the tested design point. Reconfiguring a running box (a new config pushed after first boot) is not
// offered yet: the config is fixed once sealed.
package appliance
