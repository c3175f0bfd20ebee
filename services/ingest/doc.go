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
//     objects with DeleteMarker set);
//  4. compares the listing with the source's previous snapshot: when more
//     than the configured share of its live objects is gone or changed, or
//     the bucket is empty, it raises an alert and (configurable, on by
//     default) puts a legal hold on the source's earlier snapshots;
//  5. reuses every unchanged object (same key, version, size, ETag and
//     last-modified time) by its chunk list, with no GET;
//  6. streams every new or changed body through parallel GETs into the
//     store, checking its length, its MD5 against a single-part ETag and
//     any x-amz-checksum-* the source declares; a body cut mid-transfer is
//     resumed with a Range GET that must match the same ETag;
//  7. commits the snapshot, marked incomplete when anything failed or a
//     bound was hit, with every error recorded in it.
//
// Object keys are data: they go into the manifest as bytes and never name a
// file. Bounds (largest object, objects per pull, bytes per snapshot) are
// checked against the listing and again while reading each body, so a
// source that lies about sizes cannot make a pull read more than it allows.
//
// Limits: the listing and the previous snapshot's manifest are held in
// memory (O(objects)); of the parallel GETs at most one streams an object of
// 8 MiB or more, because the store's pipeline for one large body holds
// several maximum-size chunks in memory; a listing cut by an error is not used for mass-change
// detection; retries use exponential backoff but no rate limit is applied
// to the source; a pull that cannot even reach its source commits no
// snapshot (the error is returned and logged). The Scheduler runs one pull
// at a time, since the store has one writer.
package ingest
