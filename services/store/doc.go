// Package store is Holdfast's append-only, encrypted, deduplicated snapshot
// store. It keeps snapshots in a directory on ext4 (xfs and btrfs work too)
// so that the kernel itself refuses to delete or change them: sealed files
// carry FS_IMMUTABLE_FL, directories that only grow carry FS_APPEND_FL, and
// only a process holding CAP_LINUX_IMMUTABLE (the prune path in the boot
// maintenance window) can clear a flag.
//
// Data is split by content-defined chunking (keyed FastCDC with a random
// per-store key; older stores keep restic's Rabin chunker and their random
// polynomial: chunking.go), each chunk is named by a keyed hash
// (HMAC-SHA256) so nobody can probe the store for known content, encrypted
// with AES-256-GCM, and appended to a pack file that is fsynced, renamed into
// packs/ and sealed. Each snapshot has one manifest that is also its journal
// while the snapshot is in progress; its object records are cut into
// metadata chunks stored in packs like data (manifest.go, object-chunk
// frames), so a snapshot of an unchanged bucket stores only a manifest of
// references. The chunk index is a cache that can
// always be rebuilt from the pack trailers; it lives on disk as sealed
// sorted runs (index.go), so an open store's RAM does not grow with its
// chunk count.
//
// Limits: one writer at a time (flock on STORE/lock); a manifest's objects are
// streamed frame by frame and metadata chunk by chunk, but the writer keeps
// each object's record in memory until its metadata chunk is cut and its
// reference journaled; packs are never rewritten, so a pack
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
//	| STORE/index/run-<lo>-<hi>    | -            | chunk index run: sealed sorted pages,        |
//	|                              |              | rebuildable from pack trailers; never read   |
//	|                              |              | by prune (see Trusted files)                 |
//	| STORE/state/clock.log        | APPEND (file)| clock high-water records, append-only        |
//	| STORE/state/scrub            | -            | the last scrub's end and damage count        |
//	| STORE/state/scrub-pass       | -            | the scheduled scrub's cursor (worker only)   |
//
// Trusted files (see docs/store-format.md, "Trusted files"): the worker owns
// every store file and holds the keys that authenticate them, so PID 1, the
// sealer and prune decide only from sealed, self-proving data; a file that
// is not sealed may only make prune keep more. Every store file is opened
// with O_NOFOLLOW|O_NONBLOCK, must fstat as a regular file and is read no
// further than its bound; a foreign entry is skipped and reported:
//
//	| file                    | sealed  | written by          | read by            | bound          | why trusting it cannot lose data                 |
//	|-------------------------|---------|---------------------|--------------------|----------------|--------------------------------------------------|
//	| holdfast-store          | yes     | init only           | PID 1, prune,      | 64 KiB         | authenticated with the meta key; a bad one fails |
//	|                         |         |                     | sealer (magic)     |                | the open (safe mode), it decides nothing else    |
//	| packs/ab/<sha256>       | yes     | worker: new packs   | prune (trailer),   | pack size +    | a pack is dead only when it is sealed, its own   |
//	|                         |         |                     | readers, recovery, | 2 chunks +     | trailer lists no live chunk and its bytes hash   |
//	|                         |         |                     | sealer (magics)    | 65 MiB         | to its name; a lying trailer only keeps it, and  |
//	|                         |         |                     |                    |                | readers try every pack that claims a chunk       |
//	| snapshots/<id>.snap     | yes     | worker: new ones    | prune, PID 1,      | 64 MiB a frame | what is live comes only from here and the rows   |
//	|                         |         |                     | sealer (magic, ID) |                | below; a sealed one prune cannot read makes it   |
//	|                         |         |                     |                    |                | remove no pack; an unsealed one only adds live   |
//	|                         |         |                     |                    |                | chunks and never expires                         |
//	| its xattrs              | with it | worker, before seal | prune              | 2 values       | the more protective of xattrs and head wins      |
//	| retention/<id>.<ns>.ext | yes     | worker: new ones    | prune, sealer      | 64 KiB         | a record only lengthens retention or adds a hold |
//	| receipts/<id>.receipt   | yes     | worker (signer)     | restore, sealer    | 64 KiB         | prune never reads it; restore checks its         |
//	|                         |         |                     |                    |                | signature                                        |
//	| recovery/wrapped-key    | yes     | init only           | restore --disk,    | 64 KiB         | opaque; opened only with the paper key           |
//	|                         |         |                     | sealer (magic)     |                |                                                  |
//	| wip/<id>.journal        | no      | worker              | PID 1 (recovery),  | 64 MiB a frame | only adds live chunks; one that does not read    |
//	|                         |         |                     | prune              |                | from its head references nothing and is skipped  |
//	| index/run-<lo>-<hi>     | no      | worker              | PID 1 (open),      | 4124 B a page  | prune never reads it; readers check every chunk  |
//	|                         |         |                     | readers, verify    |                | against its tag and fall back to the trailers; a |
//	|                         |         |                     |                    |                | bad page drops its run, whose packs are indexed  |
//	|                         |         |                     |                    |                | again from their trailers                        |
//	| index/index             | no      | worker (old format) | nobody (prune      | -              | never read; prune removes it and names it        |
//	|                         |         |                     | removes it)        |                |                                                  |
//	| state/clock.log         | appends | worker (appends)    | PID 1 (clean),     | last 1 MiB     | prune never reads it; junk in its tail is only   |
//	|                         | only    |                     | mirror sync        |                | reported, and a sync carries a later mark only   |
//	| state/scrub             | no      | worker (after a     | PID 1 (maintenance | 4 KiB          | prune never reads it; it can only make PID 1     |
//	|                         |         | scrub), PID 1       | window)            |                | scrub and repair; junk is ignored with an alert  |
//	| lock, tmp/*             | no      | worker              | nobody (flock;     | -              | never read                                       |
//	|                         |         |                     | removed at open)   |                |                                                  |
package store
