// Package worker is the appliance's worker: the one process that talks to
// the sources (S3 pulls on each source's schedule), owns and writes the
// store on every data disk (uid 1000, no capability), keeps the mirror
// disks in step, scrubs in daily slices and runs the console's restores
// to S3. It is the untrusted side of the control protocol
// (firmware/control, docs/control.md): whatever it says, PID 1 checks.
//
// It holds the store's subkeys only (store.StoreKeys, from PID 1's init
// request), never the master key; it reaches PID 1 only through the
// control socket and each disk's sealer only through that sealer's socket
// (docs/keys.md, docs/lockdown.md). It imports nothing of PID 1
// (firmware/appliance), and PID 1 nothing of it: firmware/roles starts it
// (Run) in a process of its own.
//
//	| file                | what                                                   |
//	|---------------------|--------------------------------------------------------|
//	| worker_linux.go     | Run, the requests PID 1 sends (handle), pulls          |
//	| disks_linux.go      | the data disks, their sealers, mirror sync, the scrub  |
//	| restore_linux.go    | the console restore's worker side                      |
//	| activity_linux.go   | what a maintenance reboot waits for (quiesce)          |
//
// Its unit tests drive it over a real control socket from a fake PID 1,
// with real sealers, ext4 with inode flags, a software TPM and MinIO.
//
// Limits: one pull per source at a time, one restore at a time; a disk
// that fails is left out until the next boot.
package worker
