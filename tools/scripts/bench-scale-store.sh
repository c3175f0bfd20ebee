#!/usr/bin/env bash
# bench-scale-store.sh: what do pulls, ls, cat, prune and verify cost as the
# object count grows? Run by `make bench-scale` before bench-scale.sh, the
# MinIO half (needs root: the store seals files).
#
# This is the store-level half of issue 18's bench-scale: TestScale in
# services/ingest (scale_linux_test.go) pulls a synthetic bucket of N small
# objects (1 to 16 KiB, keys shaped like maildir paths, nothing kept in
# memory per object) through the real pull code without S3, into a fresh
# store on TMPDIR: first pull, no-change pull, a pull after 1% changed,
# then ls (all snapshots; one snapshot's objects), cat of one object,
# prune and verify. Each step's time and peak RSS (VmHWM, reset before the
# step with /proc/self/clear_refs) is printed as a table and written to
# out/bench-scale-N.md. The MinIO half (a cached bucket of 1,000,000
# objects, beside the bare listing time) is tools/scripts/bench-scale.sh.
#
# SCALE_OBJECTS sets the counts, default "100000 1000000"; SCALE_SNAPSHOTS
# the snapshots each ends with (no-change pulls after the third), default
# 30, so prune and verify run over a month of daily snapshots.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
GO=${GO:-go}
COUNTS=${SCALE_OBJECTS:-100000 1000000}
SNAPSHOTS=${SCALE_SNAPSHOTS:-30}

log() { printf 'bench-scale: %s\n' "$*" >&2; }
die() {
	printf 'bench-scale: error: %s\n' "$*" >&2
	exit 1
}
# shellcheck source=tools/scripts/lib.sh
. "$REPO/tools/scripts/lib.sh"

[ "$(id -u)" -eq 0 ] || die "needs root (the store seals files with CAP_LINUX_IMMUTABLE)"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-bench-scale.XXXXXX")
trap 'remove_sealed_dir "${WORK:-}"' EXIT
require_flag_fs "$WORK"
mkdir -p "$REPO/out"
"$GO" test -c -o "$WORK/ingest.test" ./services/ingest
for n in $COUNTS; do
	log "$n objects"
	out="$REPO/out/bench-scale-$n.md"
	(cd services/ingest && TMPDIR=$WORK HOLDFAST_BENCH_SCALE_OBJECTS=$n HOLDFAST_BENCH_SCALE_SNAPSHOTS=$SNAPSHOTS HOLDFAST_BENCH_SCALE_OUT=$out \
		"$WORK/ingest.test" -test.run '^TestScale$' -test.count 1 -test.timeout 0 >"$WORK/log-$n" 2>&1) ||
		{ tail -40 "$WORK/log-$n" >&2; die "TestScale at $n objects failed"; }
	cat "$out"
done
