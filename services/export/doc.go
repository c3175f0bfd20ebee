// Package export is the opt-in, read-only S3 export of a Holdfast store:
// an HTTPS endpoint (path-style S3 API, AWS Signature Version 4) from which
// rclone, minio-go, mc or another Holdfast appliance can list and copy
// snapshots. It is off unless the configuration has an export block
// (services/config); it opens the store read-only (store.Options.ReadOnly:
// no lock, no recovery, no index cache write) and calls no write path of
// the store, so the process that runs it needs no write access to the
// store at all.
//
// Served: ListBuckets, HeadBucket, GetBucketLocation, GetBucketVersioning
// (always unversioned), ListObjects (V1) and ListObjectsV2 (prefix,
// delimiter, marker / continuation-token, start-after, max-keys up to
// 1000, encoding-type=url, fetch-owner), GetObject (one byte Range,
// If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since,
// response-* overrides, x-amz-checksum-mode) and HeadObject. Every request
// must be signed (Authorization header or presigned URL) with one of the
// configured access keys; the signing time must be within 15 minutes of
// the server's clock.
//
// Refused, and logged: anonymous and badly signed requests (AccessDenied,
// SignatureDoesNotMatch, InvalidAccessKeyId, RequestTimeTooSkewed); every
// PUT, POST, DELETE and PATCH (AccessDenied: uploads, multipart, copy,
// deletes, ACL, tagging and every other write); any other method
// (MethodNotAllowed); GET and HEAD of sub-resources it does not serve
// (acl, tagging, versions, uploads, ...: NotImplemented).
//
// Mapping of the store to S3:
//
//	| S3                     | store                                                  |
//	|------------------------|--------------------------------------------------------|
//	| bucket NAME            | source NAME; listed once it has a committed snapshot   |
//	|                        | (and, with a sources list, only the sources named)     |
//	| bucket creation date   | start of the source's oldest snapshot                  |
//	| key ID/               | "folder" of snapshot ID (25 characters,                |
//	|                        | YYYYMMDDTHHMMSSZ-xxxxxxxx), complete or not            |
//	| key ID/K               | object K of snapshot ID: K's current record, as        |
//	|                        | restore writes it (sorted snapshot: the first record   |
//	|                        | of K, newest version; older store: the last recorded); |
//	|                        | absent when that record is a delete marker             |
//	| key latest/K           | object K of the source's newest complete snapshot      |
//	|                        | (by start time); latest/ is absent when there is none  |
//	| key order              | byte order: ID/... by ID, then latest/...              |
//	| ETag                   | the MD5 the pull verified, else the source's ETag,     |
//	|                        | else "<32 hex of SHA-256 of the chunk IDs>-<chunks>"   |
//	|                        | (never mistaken for an MD5); empty object: MD5 of ""   |
//	| Last-Modified          | the recorded modification time, else the snapshot's    |
//	|                        | start                                                  |
//	| Content-Type           | as recorded, else application/octet-stream             |
//	| x-amz-meta-*           | the recorded user metadata                             |
//	| x-amz-checksum-*       | recorded full-object crc32, crc32c, crc64nvme, sha1,   |
//	|                        | sha256, when asked (x-amz-checksum-mode: ENABLED) on a |
//	|                        | whole-object GET or HEAD                               |
//	| versions               | none: buckets are unversioned, versionId=null only     |
//
// Why this shape: one bucket per source keeps bucket names stable and
// valid (source names are already bucket-like) while every snapshot stays
// reachable by its ID, so a copy names exactly what it restores; the
// latest/ alias gives rclone and a second appliance one fixed prefix to
// pull (`prefix = "latest/"`) that always holds a complete copy. A bucket
// per snapshot would need 25-character IDs with upper-case letters as
// bucket names, which strict clients refuse, and would hide the grouping
// by source.
//
// Object bodies stream from the store chunk by chunk; the store decrypts
// each chunk and checks it against its keyed ID as it is read. A chunk
// that fails before the response headers are sent gives InternalError;
// after that the connection is dropped, so a client sees a short body and
// never wrong bytes. For a whole-object GET the last chunk is sent only
// once the chunk sizes add up to the recorded size.
//
// New snapshots (and pruned ones) appear without a restart: at most every
// RefreshInterval the list of manifests in STORE/snapshots/ is compared
// with the last one, and when it changed the store is reopened read-only
// (so its chunk index covers the new packs). A listing continued with a
// continuation token keeps reading the latest/ snapshot it began with.
//
// Limits: path-style addressing only (virtual-hosted buckets are not
// recognised); HTTP/1.1 over TLS 1.2+ only; one byte range per GET (a
// multi-range header is ignored and the whole object sent); a Range GET
// checks the chunks it reads, not the object's total size; keys that XML
// cannot carry (invalid UTF-8, control characters) are left out of
// listings unless the client asks for encoding-type=url, and keys longer
// than 1024 bytes with their ID/ prefix are served but refused by strict
// clients (minio-go); source names that cannot be a URL path segment
// (possible with `holdfast store put --source`) are not exported; a
// bucket's top-level listing shows an ID/ for a snapshot whose every key
// is a delete marker until its manifest was read once; of the
// CachedSnapshots most recently used snapshots, a sorted one (every pull
// since sorted snapshots) is kept as an index of its manifest's frames
// (O(frames): about a thousand entries for a million objects, plus up to
// two decoded frames of 4 MiB of records), any other as its whole object
// list (O(objects): snapshots of stores written before sorted snapshots);
// a GET or listing in a sorted snapshot decodes the manifest frame that
// holds its key; at most MaxStreams object bodies are read at once,
// each holding one chunk (up to 8 MiB) in memory; there is no rate limit
// on requests or on failed signatures (each is logged); chunk sizes are not
// in the store's public API, so a Range GET far into an object reads (and
// checks) the chunks before its start unless their sizes were seen before.
package export
