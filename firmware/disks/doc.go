// Package disks finds, classifies, formats and mounts the appliance's data
// disks. A data disk is a whole block device (no partition table) holding
// one ext4 file system labelled "holdfast-data", with the store in the
// directory "store" at its root:
//
//	| where            | what                                                    |
//	|------------------|---------------------------------------------------------|
//	| whole device     | ext4, label holdfast-data, no partition table           |
//	| /store           | the Holdfast store (services/store layout)              |
//	| mount options    | nodev, nosuid, noexec, noatime                          |
//
// Scan classifies every block device the board allows:
//
//	| state    | meaning                                         | what Holdfast may do     |
//	|----------|-------------------------------------------------|--------------------------|
//	| blank    | first and last MiB read as zeros                | format, after the operator types its serial |
//	| holdfast | ext4 labelled holdfast-data                     | mount, open the store    |
//	| foreign  | anything else (other file systems, partitions)  | nothing: never touched   |
//	| boot     | the boot medium (holds HOLDFAST-CONFIG)         | nothing                  |
//
// Format is the only destructive function. It re-reads the disk right
// before formatting and refuses unless the disk is still blank and the
// serial number the operator typed equals the disk's: a disk holding
// anything is never formatted, whatever is typed.
//
// Limits: only whole disks; mke2fs comes from the initramfs (package
// initramfs copies e2fsprogs' mke2fs with its libraries); the blank test
// reads 2 MiB, so a disk zeroed at both ends but holding data in the middle
// counts as blank (a wiped disk is what an operator formats).
package disks
