#!/usr/bin/env bash
# bench-store.sh: how fast does `holdfast store put` write a mixed data set,
# next to `cp -r` and `rclone copy` of the same files? Run by
# `make bench-store` (which installs the packages and builds holdfast first).
#
# The data set (4 x 128 MiB, 256 x 1 MiB, 16384 x 4 KiB = 832 MiB of
# incompressible, deterministic bytes from tools/benchdata) is generated once
# and cached in ${XDG_CACHE_HOME:-$HOME/.cache}/holdfast/bench-data.
#
# Each tool writes into a fresh directory under ${TMPDIR:-/tmp} (which must be
# ext4, xfs or btrfs for the store). Before each run the page cache is
# dropped (when allowed), so every tool reads the data from disk; every run
# ends with `sync`, so every tool pays for getting its data to disk
# (holdfast also fsyncs each pack, manifest and directory and seals files).
# Wall time covers the command and the sync; peak RSS comes from GNU time.
#
# Results are printed and written to out/bench-store.txt. The store and the
# copies are removed afterwards (chattr -R -i -a first: the store is sealed).
# Needs root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
HOLDFAST=${HOLDFAST:-$REPO/out/bin/holdfast}
GO=${GO:-go}
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/holdfast"
DATA="$CACHE_DIR/bench-data"
SPEC_FILE="$CACHE_DIR/bench-data.spec"
RESULTS="$REPO/out/bench-store.txt"
BENCHDATA="$REPO/out/bin/benchdata"

log() { printf 'bench-store: %s\n' "$*" >&2; }
die() {
	printf 'bench-store: error: %s\n' "$*" >&2
	exit 1
}
# shellcheck source=tools/scripts/lib.sh
. "$REPO/tools/scripts/lib.sh"

[ "$(id -u)" -eq 0 ] || die "needs root (the store seals files with CAP_LINUX_IMMUTABLE)"
[ -x "$HOLDFAST" ] || die "$HOLDFAST is missing; run 'make build'"
for tool in rclone /usr/bin/time chattr cp sync; do
	command -v "$tool" >/dev/null || die "$tool is missing; run 'make setup'"
done

# --- data set ----------------------------------------------------------------
mkdir -p "$REPO/out/bin" "$CACHE_DIR"
CGO_ENABLED=0 "$GO" build -o "$BENCHDATA" ./tools/benchdata
SPEC=$("$BENCHDATA" -print-spec)
if [ -d "$DATA" ] && [ "$(cat "$SPEC_FILE" 2>/dev/null)" = "$SPEC" ]; then
	log "using cached data set $DATA"
else
	log "generating data set into $DATA ($SPEC)"
	rm -rf "$DATA" "$DATA.tmp" "$SPEC_FILE"
	"$BENCHDATA" -out "$DATA" >&2
	printf '%s\n' "$SPEC" >"$SPEC_FILE"
fi
DATA_BYTES=$(du -sb --apparent-size "$DATA" | cut -f1)
DATA_FILES=$(find "$DATA" -type f | wc -l)
# Only file contents count toward throughput.
CONTENT_BYTES=$(find "$DATA" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')

# --- work area ---------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-bench.XXXXXX")
cleanup() {
	remove_sealed_dir "${WORK:-}"
}
trap cleanup EXIT
require_flag_fs "$WORK"


ROWS=()
# row NAME VAR: a report row from measure's VAR_SECS and VAR_RSS (lib.sh):
# seconds (command plus sync), MB/s of file content and peak RSS.
row() {
	local secs=${2}_SECS rss=${2}_RSS
	ROWS+=("$(awk -v n="$1" -v s="${!secs}" -v b="$CONTENT_BYTES" -v r="${!rss}" \
		'BEGIN { printf "%-22s %9.2f %9.1f %10.0f", n, s, b / 1e6 / s, r / 1024 }')")
}

# (a) holdfast store put into a fresh store.
"$HOLDFAST" store init "$WORK/store" --key-file "$WORK/key" >/dev/null
measure PUT "$HOLDFAST" store put "$WORK/store" --key-file "$WORK/key" \
	--source bench --retain 1d "$DATA"
row "holdfast store put" PUT
grep -q ' committed' "$WORK/PUT.log" || die "holdfast put did not commit: $(cat "$WORK/PUT.log")"
PUT_LINE=$(grep ' committed' "$WORK/PUT.log")
STORE_BYTES=$(du -sb --apparent-size "$WORK/store" | cut -f1)
STORE_DISK=$(du -sB1 "$WORK/store" | cut -f1)
PACKS=$(find "$WORK/store/packs" -type f | wc -l)
PACK_BYTES=$(find "$WORK/store/packs" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')

# (b) cp -r to a fresh directory.
measure CP cp -r "$DATA" "$WORK/cp"
row "cp -r" CP
CP_DISK=$(du -sB1 "$WORK/cp" | cut -f1)

# (c) rclone copy, local to local.
: >"$WORK/rclone.conf"
measure RCLONE env RCLONE_CONFIG="$WORK/rclone.conf" \
	rclone copy --local-no-check-updated "$DATA" "$WORK/rclone"
row "rclone copy" RCLONE

# --- report ------------------------------------------------------------------
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
{
	printf 'Holdfast store benchmark, %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf 'machine: %s cores, %s RAM, kernel %s; work dir on %s; caches dropped: %s\n' \
		"$(nproc)" "$(free -h | awk '/^Mem:/ { print $2 }')" "$(uname -r)" "$FSTYPE" "$CACHES_DROPPED"
	printf 'holdfast: %s; rclone: %s\n' "$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo 'no commit')" \
		"$(rclone version 2>/dev/null | head -n 1)"
	printf 'data: %s files, %s bytes of content (%s), %s\n' "$DATA_FILES" "$CONTENT_BYTES" "$(mib "$CONTENT_BYTES")" "$SPEC"
	printf '\n'
	printf '%-22s %9s %9s %10s\n' tool seconds MB/s 'peak MiB'
	printf '%s\n' "${ROWS[@]}"
	printf '\n'
	printf 'holdfast: %s\n' "$PUT_LINE"
	printf 'store size: %s bytes (%s), %s of the data; %s packs holding %s bytes; %s bytes on disk\n' \
		"$STORE_BYTES" "$(mib "$STORE_BYTES")" "$(pct "$STORE_BYTES" "$DATA_BYTES")" "$PACKS" "$PACK_BYTES" "$STORE_DISK"
	printf 'data size:  %s bytes (%s) as listed by du --apparent-size; cp -r copy: %s bytes on disk\n' \
		"$DATA_BYTES" "$(mib "$DATA_BYTES")" "$CP_DISK"
} | tee "$RESULTS"
log "results written to $RESULTS"
