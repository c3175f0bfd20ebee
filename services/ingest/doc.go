// Package ingest pulls S3-compatible buckets into the store: one snapshot
// per pull, never a write, delete or change at the source (the appliance
// only lists and reads; see invariant I3 and I7 in the design brief).
//
// A pull:
//
//  1. checks the bucket and whether it is versioned (GetBucketVersioning);
//     a source it cannot reach or read fails here, before any snapshot;
//  2. computes the new snapshot's retain-until from the source's policy
//     (config.Retention.RetainUntil) and begins the snapshot;
//  3. lists the bucket (ListObjectsV2, or ListObjectVersions when versioning
//     is or was enabled, so every version is kept: each version is one
//     object, keyed by key + version ID; delete markers are recorded as
//     objects with DeleteMarker set), and processes the listing as it
//     streams by, in S3's order (keys ascending by byte; an entry listed
//     below a key already listed is refused with a recorded error):
//  4. reuses every unchanged object (same key, version, size, ETag and
//     last-modified time) by its chunk list, with no GET. The previous
//     snapshots are sorted too, so their object streams are merged with
//     the listing in one pass (merge.go); an older, unsorted one is read
//     into a map instead, and the log says so;
//  5. streams every new or changed body through parallel GETs into the
//     store, checking its length, its MD5 against a single-part ETag and
//     any x-amz-checksum-* the source declares; a body cut mid-transfer is
//     resumed with a Range GET that must match the same ETag. GETs run
//     across a window of listWindow entries ahead of the last record, and
//     records reach the snapshot strictly in listing order (a sorted
//     snapshot);
//  6. once the listing is complete, compares it with the source's previous
//     snapshot (counted on the merge as it went): when more than the
//     configured share of its live objects is gone or changed, or the
//     bucket is empty, it raises an alert and (configurable, on by
//     default) puts a legal hold on the source's earlier snapshots;
//  7. commits the snapshot, marked incomplete when anything failed or a
//     bound was hit, with every error recorded in it.
//
// Object keys are data: they go into the manifest as bytes and never name a
// file. S3's own caps hold whatever a source sends: a key over 1,024 bytes
// (MaxKeyBytes) or user metadata over 2 KB (MaxUserMetaBytes, the bytes of
// every key and value) is not stored, and a per-object error is recorded. Bounds (largest object, objects per pull, bytes per snapshot) are
// checked against the listing and again while reading each body, so a
// source that lies about sizes cannot make a pull read more than it allows.
//
// A hostile or broken source is also bounded in time and per response
// (Puller.Net, NetLimits; defaults in brackets): headers must arrive within
// ResponseHeaderTimeout [2m] and fit MaxResponseHeaderBytes [1 MiB]; a body
// (object or listing page) that delivers fewer than StallMinBytes [64 KiB]
// in StallWindow [1m] of waiting is cut as stalled, and an object body is
// then resumed like one cut by the network; a listing page, configuration
// or error document is at most MaxXMLBytes [8 MiB], at most 32 levels deep
// and 4,000 entries, and rooted in the element the request asks for
// (services/s3client checks all of this as the bytes stream in); a listing
// during which no entry arrives for ListIdleTimeout [5m] ends (a server
// answering "truncated" with empty pages forever). Redirects are never
// followed. Each of these ends as an error recorded in the snapshot, which
// is committed incomplete; errors beyond the first 1,000 are counted, not
// logged or recorded one by one. docs/faults.md lists the scenarios tested
// against a real MinIO behind a hostile proxy, with peak RSS.
//
// The store's disk: a pull that runs out of space (ENOSPC) is stopped, its
// snapshot in progress discarded (committed snapshots are untouched; packs
// it sealed stay until prune finds them unreferenced) and a disk-full alert
// raised; after every pull the store's file system is checked with statfs
// and a disk-full alert raised when more than Puller.DiskFullThreshold
// [85%] is in use. Scheduled and one-off pulls both go through Puller.Pull,
// so both are checked.
//
// Limits: a pull's memory does not grow with the object count (no list of
// the bucket, of the previous snapshot or of what it records is kept: one
// manifest frame per merged snapshot, the window of entries in flight and
// the store's chunk buffers; TestPullMemoryFlat), except when a previous
// snapshot is not sorted (written before sorted snapshots): then the
// previous snapshots are read into a map, about 2 KB per object, until a
// pull has written a complete sorted one (the baseline). Only the newest
// maxMergeStreams-1 incomplete snapshots after the baseline are reused
// from, beside it. A listing cut by an error is not used for mass-change
// detection; retries use exponential backoff but no rate limit is applied
// to the source; a pull that cannot even reach its source commits no
// snapshot (the error is returned, and logged by the caller); a pull
// stopped by a full disk keeps nothing of what it fetched (the store
// cannot close a pack that failed mid-write), so the 85% alert is the
// warning to act on. The Scheduler runs one pull at a time, since the
// store has one writer.
package ingest
