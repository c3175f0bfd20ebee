package sealer

import "golang.org/x/sys/unix"

// Capabilities are what a sealer process must hold when it runs, as it
// does on the appliance, under a uid of its own that owns nothing of the
// store (it reads the magic of a file through the store's group):
//
//	| capability          | why                                                  |
//	|---------------------|------------------------------------------------------|
//	| CAP_LINUX_IMMUTABLE | setting FS_IMMUTABLE_FL or FS_APPEND_FL              |
//	| CAP_FOWNER          | FS_IOC_SETFLAGS is allowed only to the file's owner  |
//	|                     | or a holder of CAP_FOWNER (inode_owner_or_capable)   |
//
// What a subverted sealer can then do, and why it is confined: both
// capabilities also let it CLEAR the flags and (CAP_FOWNER) chmod any file
// it can reach, then write it through the mode it gave itself. So the
// appliance starts each sealer in a mount namespace of its own in which
// every mount is read-only except its one store directory
// (caps.ReadOnlyMounts): its reach is the store it serves, which is what a
// sealer running as the store's owner (the design before) could already
// unseal; it can no longer signal the worker or the export (other uids), it
// holds no key, and it cannot touch the other data disk, the config
// partition or the root file system (EROFS). Reading needs no capability:
// the store's files are group-readable (services/store) and the sealer is
// a member of the worker's group.
func Capabilities() []int { return []int{unix.CAP_LINUX_IMMUTABLE, unix.CAP_FOWNER} }
