#!/usr/bin/env bash
# bench-scale.sh: does a mail provider's archive fit? Run by `make
# bench-scale` (which installs the packages, builds MinIO and holdfast
# first).
#
# A MinIO server (the pinned build from setup.sh) serves bucket "mail" of
# BENCH_SCALE_OBJECTS (default 1,000,000) objects of 1 to 16 KiB under keys
# shaped like maildir paths (tools/benchpull -maildir). The bucket is built
# once and kept in ~/.cache/holdfast/bench-scale/N (uploading a million
# small objects takes a while); every run leaves it as it found it. Then,
# in this order, each with its wall time and peak RSS (GNU time):
#
#   bare listing               the ceiling of a no-change pull
#   holdfast pull (first)      into a fresh store
#   holdfast pull (no change)  the same bucket again
#   holdfast pull (1% changed) after every 100th object got new bytes
#   more no-change pulls       up to BENCH_SCALE_SNAPSHOTS snapshots (default
#                              30), timed as one
#   holdfast store ls SNAP     every object of the last snapshot
#   holdfast store cat         one object in the middle of the bucket
#   holdfast store prune       over all the snapshots (all retained: the
#                              work is the deciding, nothing is removed)
#   holdfast store verify      every pack and manifest
#
# BENCH_SCALE_BUILD_ONLY=1 only builds the bucket.
#
# Goals (issue 18): peak RSS of every step at most 96 MiB; a no-change pull
# within 1.2x the bare listing; metadata written by a no-change pull under
# 1% of a full snapshot's. Table in out/bench-scale.txt. Needs root (the
# store seals files). The store is removed afterwards; the bucket is kept.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
HOLDFAST=${HOLDFAST:-$REPO/out/bin/holdfast}
GO=${GO:-go}
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/holdfast"
MINIO=${MINIO:-$CACHE_DIR/bin/minio}
N=${BENCH_SCALE_OBJECTS:-1000000}
SNAPSHOTS=${BENCH_SCALE_SNAPSHOTS:-30}
RESULTS="$REPO/out/bench-scale.txt"
BENCHPULL="$REPO/out/bin/benchpull"
ACCESS=holdfast-bench
SECRET=holdfast-bench-secret
BUCKET_DIR="$CACHE_DIR/bench-scale/$N"

log() { printf 'bench-scale: %s\n' "$*" >&2; }
die() {
	printf 'bench-scale: error: %s\n' "$*" >&2
	exit 1
}
# shellcheck source=tools/scripts/lib.sh
. "$REPO/tools/scripts/lib.sh"

[ "$(id -u)" -eq 0 ] || die "needs root (the store seals files with CAP_LINUX_IMMUTABLE)"
[ -x "$HOLDFAST" ] || die "$HOLDFAST is missing; run 'make build'"
[ -x "$MINIO" ] || die "$MINIO is missing; run 'make setup'"
[ "$SNAPSHOTS" -ge 3 ] || die "BENCH_SCALE_SNAPSHOTS must be at least 3"
for tool in /usr/bin/time chattr sync; do
	command -v "$tool" >/dev/null || die "$tool is missing; run 'make setup'"
done
mkdir -p "$REPO/out/bin" "$BUCKET_DIR"
CGO_ENABLED=0 "$GO" build -o "$BENCHPULL" ./tools/benchpull

WORK=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-bench-scale.XXXXXX")
MINIO_PID=
CHANGED=0
cleanup() {
	if [ "$CHANGED" = 1 ] && [ -n "$MINIO_PID" ]; then
		log "putting the changed objects back"
		"${BP[@]}" -maildir "$N" -change-every 100 -gen 0 -workers 16 >&2 || rm -f "$BUCKET_DIR/complete"
	fi
	if [ -n "$MINIO_PID" ]; then
		kill "$MINIO_PID" 2>/dev/null || true
		wait "$MINIO_PID" 2>/dev/null || true
	fi
	remove_sealed_dir "${WORK:-}"
}
trap cleanup EXIT
require_flag_fs "$WORK"

# --- MinIO and the bucket, built once ----------------------------------------
PORT=$("$BENCHPULL" -free-port)
CPORT=$("$BENCHPULL" -free-port)
ENDPOINT=127.0.0.1:$PORT
if [ ! -e "$BUCKET_DIR/complete" ]; then
	rm -rf "$BUCKET_DIR/minio-data"
fi
mkdir -p "$BUCKET_DIR/minio-data"
MINIO_ROOT_USER=$ACCESS MINIO_ROOT_PASSWORD=$SECRET MINIO_BROWSER=off MINIO_UPDATE=off \
	"$MINIO" server --quiet --address "$ENDPOINT" --console-address "127.0.0.1:$CPORT" "$BUCKET_DIR/minio-data" \
	>"$WORK/minio.log" 2>&1 &
MINIO_PID=$!
BP=(env BENCH_ACCESS_KEY=$ACCESS BENCH_SECRET_KEY=$SECRET "$BENCHPULL" -endpoint "$ENDPOINT" -bucket mail)
"$BENCHPULL" -endpoint "$ENDPOINT" -wait 120s || die "minio not ready: $(cat "$WORK/minio.log")"
if [ ! -e "$BUCKET_DIR/complete" ]; then
	log "building bucket mail of $N maildir objects in $BUCKET_DIR (once)"
	start=$(date +%s)
	"${BP[@]}" -maildir "$N" -workers 16 >&2
	touch "$BUCKET_DIR/complete"
	log "built in $(($(date +%s) - start)) s"
fi
if [ "${BENCH_SCALE_BUILD_ONLY:-}" = 1 ]; then
	log "bucket ready in $BUCKET_DIR (BENCH_SCALE_BUILD_ONLY=1: nothing measured)"
	exit 0
fi

# --- set-up ------------------------------------------------------------------
"$HOLDFAST" store init "$WORK/store" --key-file "$WORK/key" >/dev/null
cat >"$WORK/cfg.hcl" <<HCL
appliance { name = "bench-scale" }
source "mail" {
  s3 {
    endpoint   = "$ENDPOINT"
    bucket     = "mail"
    access_key = "$ACCESS"
    secret_key = "$SECRET"
    tls        = false
  }
  schedule = "every 1d"
  limits {
    max_objects_per_pull = $((N * 2))
  }
  retention {
    all_for = "30d"
  }
}
HCL

# store_bytes: bytes of the whole store, a proxy of what a pull wrote
# (data and metadata).
store_bytes() { du -sb "$WORK/store" | cut -f1; }

KF=(--key-file "$WORK/key")
PULL=("$HOLDFAST" pull --config "$WORK/cfg.hcl" --store "$WORK/store" "${KF[@]}")
measure BARE_LIST "${BP[@]}" -list-all -workers 4
grep -q "listed $N objects" "$WORK/BARE_LIST.log" || die "the bucket holds other than $N objects: $(cat "$WORK/BARE_LIST.log")"
B0=$(store_bytes)
measure PULL1 "${PULL[@]}"
grep -q "$N objects" "$WORK/PULL1.log" || die "first pull: $(cat "$WORK/PULL1.log")"
B1=$(store_bytes)
measure PULL2 "${PULL[@]}"
grep -q "(0 fetched" "$WORK/PULL2.log" || die "the no-change pull fetched something: $(cat "$WORK/PULL2.log")"
B2=$(store_bytes)
CHANGED=1
"${BP[@]}" -maildir "$N" -change-every 100 -gen 1 -workers 16 >&2
measure PULL3 "${PULL[@]}"
B3=$(store_bytes)
log "$((SNAPSHOTS - 3)) more no-change pulls"
start=$(date +%s.%N)
for _ in $(seq 4 "$SNAPSHOTS"); do
	"${PULL[@]}" >>"$WORK/more.log" 2>&1 || die "pull failed: $(tail -n 5 "$WORK/more.log")"
done
MORE_SECS=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
SNAP=$("$HOLDFAST" store ls "$WORK/store" "${KF[@]}" | awk '$1 ~ /^[0-9]+T[0-9]+Z-/ { id = $1 } END { print id }')
[ -n "$SNAP" ] || die "no snapshot listed"
KEY=$(awk -v want=$((N / 2)) '/^SIZE / { d = 1; next } d && ++n == want { print $NF; exit }' < <("$HOLDFAST" store ls "$WORK/store" "${KF[@]}" "$SNAP"))
measure LS "$HOLDFAST" store ls "$WORK/store" "${KF[@]}" "$SNAP"
[ "$(wc -l <"$WORK/LS.log")" -ge "$N" ] || die "ls listed $(wc -l <"$WORK/LS.log") lines, want $N"
measure CAT "$HOLDFAST" store cat "$WORK/store" "${KF[@]}" "$SNAP" "$KEY"
measure PRUNE "$HOLDFAST" store prune "$WORK/store" "${KF[@]}"
measure VERIFY "$HOLDFAST" store verify "$WORK/store" "${KF[@]}"

# --- report ------------------------------------------------------------------
row() { # name secs rss_kib [note]
	awk -v n="$1" -v s="$2" -v r="$3" -v x="${4:-}" \
		'BEGIN { printf "| %-34s | %9.2f | %9.1f | %s\n", n, s, r / 1024, x }'
}
MIB() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
PEAK=0
for v in PULL1 PULL2 PULL3 LS CAT PRUNE VERIFY; do
	r=${v}_RSS
	[ "${!r}" -gt "$PEAK" ] && PEAK=${!r}
done
NOCHANGE_RATIO=$(awk -v h="$PULL2_SECS" -v c="$BARE_LIST_SECS" 'BEGIN { printf "%.2f", h / c }')
META_PCT=$(awk -v a="$((B2 - B1))" -v f="$((B1 - B0))" 'BEGIN { printf "%.2f", 100 * a / f }')
{
	printf 'Holdfast scale benchmark, %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf 'machine: %s cores, %s RAM, kernel %s; work dir on %s\n' \
		"$(nproc)" "$(free -h | awk '/^Mem:/ { print $2 }')" "$(uname -r)" "$FSTYPE"
	printf 'holdfast: %s; minio: %s\n' "$(git describe --always --dirty 2>/dev/null || echo 'no commit')" "$("$MINIO" --version | head -n 1)"
	printf 'bucket: %s maildir objects of 1 to 16 KiB; %s snapshots\n\n' "$N" "$SNAPSHOTS"
	printf '| %-34s | %9s | %9s | %s\n' step seconds 'peak MiB' 'store grew by'
	printf '|%s|%s|%s|%s\n' "------------------------------------" "-----------" "-----------" "------"
	row "bare listing (ceiling)" "$BARE_LIST_SECS" "$BARE_LIST_RSS"
	row "holdfast pull (first)" "$PULL1_SECS" "$PULL1_RSS" "$(MIB $((B1 - B0)))"
	row "holdfast pull (no change)" "$PULL2_SECS" "$PULL2_RSS" "$(MIB $((B2 - B1)))"
	row "holdfast pull (1% changed)" "$PULL3_SECS" "$PULL3_RSS" "$(MIB $((B3 - B2)))"
	printf '| %-34s | %9.2f | %9s |\n' "$((SNAPSHOTS - 3)) more no-change pulls" "$MORE_SECS" "-"
	row "store ls (one snapshot)" "$LS_SECS" "$LS_RSS"
	row "store cat (one object)" "$CAT_SECS" "$CAT_RSS"
	row "store prune ($SNAPSHOTS snapshots)" "$PRUNE_SECS" "$PRUNE_RSS"
	row "store verify" "$VERIFY_SECS" "$VERIFY_RSS"
	printf '\ngoals:\n'
	verdict() { if [ "$2" = 1 ]; then printf '  met:     %s\n' "$1"; else printf '  NOT MET: %s\n' "$1"; fi; }
	verdict "peak RSS of every step <= 96 MiB: $(awk -v k="$PEAK" 'BEGIN { printf "%.1f", k / 1024 }') MiB" "$(awk -v k="$PEAK" 'BEGIN { print (k <= 96 * 1024) ? 1 : 0 }')"
	verdict "no-change pull <= 1.2x the bare listing: ${NOCHANGE_RATIO}x" "$(awk -v x="$NOCHANGE_RATIO" 'BEGIN { print (x <= 1.2) ? 1 : 0 }')"
	verdict "a no-change pull writes < 1% of a first pull: ${META_PCT}%" "$(awk -v x="$META_PCT" 'BEGIN { print (x < 1) ? 1 : 0 }')"
	printf '\nfirst pull:     %s\n' "$(grep 'snapshot' "$WORK/PULL1.log" | grep -v '^{' | head -n 1)"
	printf 'no change:      %s\n' "$(grep 'snapshot' "$WORK/PULL2.log" | grep -v '^{' | head -n 1)"
	printf '1%% changed:     %s\n' "$(grep 'snapshot' "$WORK/PULL3.log" | grep -v '^{' | head -n 1)"
	printf 'prune:          %s\n' "$(tail -n 1 "$WORK/PRUNE.log")"
	printf 'verify:         %s\n' "$(tail -n 1 "$WORK/VERIFY.log")"
} | tee "$RESULTS"
log "results written to $RESULTS"
