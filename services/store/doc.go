// Package store is Holdfast's append-only, encrypted, deduplicated snapshot
// store. It keeps snapshots in a directory on ext4 (xfs and btrfs work too)
// so that the kernel itself refuses to delete or change them: sealed files
// carry FS_IMMUTABLE_FL, directories that only grow carry FS_APPEND_FL, and
// only a process holding CAP_LINUX_IMMUTABLE (the prune path in the boot
// maintenance window) can clear a flag.
//
// Data is split by content-defined chunking (restic's Rabin chunker with a
// per-store random polynomial), each chunk is named by a keyed hash
// (HMAC-SHA256) so nobody can probe the store for known content, encrypted
// with AES-256-GCM, and appended to a pack file that is fsynced, renamed into
// packs/ and sealed. Each snapshot has one manifest that is also its journal
// while the snapshot is in progress. The chunk index is a cache that can
// always be rebuilt from the pack trailers.
//
// Limits: one writer at a time (flock on STORE/lock); a manifest's objects are
// streamed frame by frame but the writer keeps each object's chunk list in
// memory until its frame is written; packs are never rewritten, so a pack
// with one live chunk is kept whole. Chunks are not compressed.
//
// The on-disk layout (see also docs/store-format.md):
//
//	| path                         | flags        | what                                         |
//	|------------------------------|--------------|----------------------------------------------|
//	| STORE/                       | APPEND       | store root: entries are only ever added      |
//	| STORE/holdfast-store         | IMMUTABLE    | config: magic, version, store ID, sealed     |
//	|                              |              | chunker polynomial and pack size             |
//	| STORE/lock                   | -            | flock target: one writer at a time           |
//	| STORE/packs/                 | APPEND       | 256 shard directories, created on demand     |
//	| STORE/packs/ab/              | APPEND       | shard "ab": packs whose name starts "ab"     |
//	| STORE/packs/ab/<sha256>      | IMMUTABLE    | sealed pack; name = SHA-256 of its bytes     |
//	| STORE/snapshots/             | APPEND       | committed manifests                          |
//	| STORE/snapshots/<id>.snap    | IMMUTABLE    | manifest; xattrs user.holdfast.retain_until  |
//	|                              |              | and user.holdfast.legal_hold set before seal |
//	| STORE/retention/             | APPEND       | retention extensions (only ever lengthen)    |
//	| STORE/retention/<id>.<ns>.ext| IMMUTABLE    | one sealed extension record                  |
//	| STORE/recovery/              | APPEND       | present when a recovery key was made         |
//	| STORE/recovery/wrapped-key   | IMMUTABLE    | master key wrapped under the paper recovery  |
//	|                              |              | key (firmware/recoverykey), in clear         |
//	| STORE/receipts/              | APPEND       | signed receipts of committed manifests       |
//	| STORE/receipts/<id>.receipt  | IMMUTABLE    | TPM signature over the manifest's SHA-256    |
//	| STORE/wip/<id>.journal       | -            | manifest of the snapshot in progress         |
//	| STORE/tmp/                   | -            | packs being written; emptied at open         |
//	| STORE/index/index            | -            | sealed chunk index cache, rebuildable        |
//	| STORE/state/clock.log        | APPEND (file)| clock high-water records, append-only        |
package store
