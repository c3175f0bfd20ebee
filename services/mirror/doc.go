// Package mirror keeps the store on two data disks and scrubs them: every
// pack, manifest, retention record, receipt and the recovery blob is
// written to both, so each disk is a complete store on its own (same
// config, so the same store ID, keys and chunker polynomial; see
// store.InitMirror), and a file damaged on one disk is repaired from the
// other.
//
// The mirror works at the store level, file by file, not as a block device
// (RAID 1): a copy is made only of a sealed file, is checked against the
// file's own integrity (packs are named by their SHA-256 and every chunk is
// authenticated; manifests and records by the store's keys) before it is
// installed, and is installed with the store's discipline (tmp/, fsync,
// RENAME_NOREPLACE into an append-only directory, fsync, xattrs, seal), so
// the secondary has the same kernel protection as the primary and a disk
// never holds half a file or a manifest whose packs it lacks.
//
// The jobs and where they run on the appliance (firmware/appliance,
// docs/mirror.md):
//
//	| call   | when                                | privilege            | changes                     |
//	|--------|-------------------------------------|----------------------|-----------------------------|
//	| Sync   | after every pull, in the background | the secondary's      | adds files to the secondary |
//	|        | (the worker's own loop; Runner does | sealer (set flags)   | only; never removes/replaces|
//	|        | the same for a fixed primary); at   |                      |                             |
//	|        | boot both ways, to catch up         |                      |                             |
//	| Scrub  | Scrubber.Run, a slice a day, on the | none (read-only      | nothing (a Scrubber writes  |
//	|        | scrub schedule; Scrub whole at the  | opens, no lock)      | only its state file)        |
//	|        | console; at boot before             |                      |                             |
//	|        | Repair when a scrub asked for one   |                      |                             |
//	| Repair | missing files: right after a scrub; | CAP_LINUX_IMMUTABLE  | adds missing files; replaces|
//	|        | damaged ones: boot maintenance      | for damaged files    | exactly the damaged ones    |
//	|        | window (PID 1, Options.Maintenance) |                      |                             |
//
// Sync is one way, primary to secondary ("primary" is whichever disk ingest
// writes to). It never waits on the primary's writer and a pull never waits
// on it: a missing, foreign or failing secondary only degrades the mirror,
// with a disk-error alert, and the next Sync catches up. Scrub reads every
// file on every disk and proposes Fixes; it alerts (scrub-damage) and
// changes nothing. Repair re-checks each fix when it makes it, so a stale or
// forged fix list does no harm: it never touches a file that passes its
// check, refuses a source that does not, and never deletes anything; a file
// damaged on both disks is only reported.
//
// Limits:
//   - two disks are the design point (Scrub and Repair take any number;
//     Sync copies one primary to one secondary);
//   - Sync never removes: prune runs on each disk in the maintenance window
//     and, with the same manifests, records and clock mark, removes the
//     same files; until then the secondary may hold more;
//   - the config file is cloned once by store.InitMirror and checked at
//     every open; a disk whose config is damaged cannot be opened and is
//     reported, not repaired;
//   - receipts and the recovery blob are opaque to the store: copies that
//     differ are reported as conflicts, never repaired either way;
//   - a file is read whole into memory for its check (packs, 16 MiB by
//     default; a manifest's object list), like store.Verify;
//   - Scrub reads everything in one go and has no rate limit; a Scrubber
//     (slice.go) scrubs in daily slices under a per-disk byte rate,
//     resumable from a cursor in a state file (scrubstate.go), and is
//     what the worker's schedule runs;
//   - Scrub lists all sealed files of each disk at once (store.ListSealed),
//     so its memory grows with the number of packs; a slice walks a
//     directory at a time (store.SealedDirs), but stats every file to size
//     its share, so its start-up grows with the number of files;
//   - after lockdown each disk needs its own sealer process (a sealer
//     serves one store root).
package mirror
