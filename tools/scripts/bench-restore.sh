#!/usr/bin/env bash
# bench-restore.sh: how fast does `holdfast restore` write a snapshot to an
# S3 bucket, next to `rclone copy` of the same files to the same MinIO? Run
# by `make bench-restore` (which installs the packages, builds MinIO and
# holdfast first).
#
# The data set is bench-store's (4 x 128 MiB, 256 x 1 MiB, 16384 x 4 KiB =
# 832 MiB of incompressible, deterministic bytes from tools/benchdata,
# cached in ${XDG_CACHE_HOME:-$HOME/.cache}/holdfast/bench-data). It is put
# into a fresh store once (`holdfast store put`, not timed). A MinIO server
# (the pinned build from setup.sh) starts on 127.0.0.1 with a fresh data
# directory. Then ROUNDS rounds (default 3), each with a fresh bucket per
# tool, the order alternating between rounds (`holdfast store put` keys
# files by their path from the data set's parent, so both buckets end up
# with the same keys, bench-data/...):
#
#   holdfast restore --to s3://BUCKET/   the snapshot, from the store
#   rclone copy DATA minio:BUCKET/bench-data   the plain data set directory
#
# Each run starts after dropping the page cache (when allowed), so both
# read their input from disk, and ends with `sync` (MinIO's writes); wall
# time covers both, peak RSS comes from GNU time. holdfast uses its
# defaults (4 objects at once, 16 MiB parts, from the store, checking every
# chunk); rclone is Debian's with its defaults (4 transfers, single PUTs
# below 200 MiB). After the last round both buckets are compared with the
# data set (object count, total size) and the last holdfast bucket is
# checked byte for byte (`rclone check --download`, not timed).
#
# Goal (issue 7): holdfast restore at least 1.0x rclone copy's throughput
# (median of the rounds). The table, the load on the machine before the
# run and whether the goal was met are printed and written to
# out/bench-restore.txt. Needs root (the store seals files). Everything is
# removed afterwards.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
HOLDFAST=${HOLDFAST:-$REPO/out/bin/holdfast}
GO=${GO:-go}
ROUNDS=${ROUNDS:-3}
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/holdfast"
MINIO=${MINIO:-$CACHE_DIR/bin/minio}
DATA="$CACHE_DIR/bench-data"
SPEC_FILE="$CACHE_DIR/bench-data.spec"
RESULTS="$REPO/out/bench-restore.txt"
BENCHDATA="$REPO/out/bin/benchdata"
BENCHPULL="$REPO/out/bin/benchpull"
ACCESS=holdfast-bench
SECRET=holdfast-bench-secret

log() { printf 'bench-restore: %s\n' "$*" >&2; }
die() {
	printf 'bench-restore: error: %s\n' "$*" >&2
	exit 1
}
# shellcheck source=tools/scripts/lib.sh
. "$REPO/tools/scripts/lib.sh"

[ "$(id -u)" -eq 0 ] || die "needs root (the store seals files with CAP_LINUX_IMMUTABLE)"
[ -x "$HOLDFAST" ] || die "$HOLDFAST is missing; run 'make build'"
[ -x "$MINIO" ] || die "$MINIO is missing; run 'make setup'"
for tool in rclone /usr/bin/time chattr sync; do
	command -v "$tool" >/dev/null || die "$tool is missing; run 'make setup'"
done
case $ROUNDS in '' | *[!0-9]* | 0) die "ROUNDS=$ROUNDS: want a positive number" ;; esac
mkdir -p "$REPO/out/bin" "$CACHE_DIR"
CGO_ENABLED=0 "$GO" build -o "$BENCHDATA" ./tools/benchdata
CGO_ENABLED=0 "$GO" build -o "$BENCHPULL" ./tools/benchpull

# Before anything of ours runs: what else is using the machine.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
TOP_BEFORE=$(ps --sort=-pcpu -eo pcpu,etime,comm --no-headers | head -n 5 | awk '{ printf "%s%s %s%% (%s)", (NR > 1 ? ", " : ""), $3, $1, $2 }')

# --- data set ----------------------------------------------------------------
SPEC=$("$BENCHDATA" -print-spec)
if [ -d "$DATA" ] && [ "$(cat "$SPEC_FILE" 2>/dev/null)" = "$SPEC" ]; then
	log "using cached data set $DATA"
else
	log "generating data set into $DATA ($SPEC)"
	rm -rf "$DATA" "$DATA.tmp" "$SPEC_FILE"
	"$BENCHDATA" -out "$DATA" >&2
	printf '%s\n' "$SPEC" >"$SPEC_FILE"
fi
DATA_FILES=$(find "$DATA" -type f | wc -l)
CONTENT_BYTES=$(find "$DATA" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')

# --- work area, store, MinIO -------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-bench-restore.XXXXXX")
MINIO_PID=
cleanup() {
	if [ -n "$MINIO_PID" ]; then
		kill "$MINIO_PID" 2>/dev/null || true
		wait "$MINIO_PID" 2>/dev/null || true
	fi
	remove_sealed_dir "${WORK:-}"
}
trap cleanup EXIT
require_flag_fs "$WORK"

log "putting the data set into a store (not timed)"
"$HOLDFAST" store init "$WORK/store" --key-file "$WORK/key" >/dev/null
"$HOLDFAST" store put "$WORK/store" --key-file "$WORK/key" --source bench --retain 1d "$DATA" >"$WORK/put.log" 2>&1 ||
	die "store put failed: $(cat "$WORK/put.log")"
SNAPSHOT=$(sed -n 's/^snapshot \([^ ]*\) committed.*/\1/p' "$WORK/put.log")
[ -n "$SNAPSHOT" ] || die "no snapshot ID in: $(cat "$WORK/put.log")"

PORT=$("$BENCHPULL" -free-port)
CPORT=$("$BENCHPULL" -free-port)
ENDPOINT=127.0.0.1:$PORT
mkdir -p "$WORK/minio-data"
MINIO_ROOT_USER=$ACCESS MINIO_ROOT_PASSWORD=$SECRET MINIO_BROWSER=off MINIO_UPDATE=off \
	"$MINIO" server --quiet --address "$ENDPOINT" --console-address "127.0.0.1:$CPORT" "$WORK/minio-data" \
	>"$WORK/minio.log" 2>&1 &
MINIO_PID=$!
"$BENCHPULL" -endpoint "$ENDPOINT" -wait 60s || die "minio not ready: $(cat "$WORK/minio.log")"
log "MinIO $("$MINIO" --version | head -n 1) on $ENDPOINT"

cat >"$WORK/target.hcl" <<HCL
target {
  endpoint   = "$ENDPOINT"
  access_key = "$ACCESS"
  secret_key = "$SECRET"
  tls        = false
}
HCL
export RCLONE_CONFIG="$WORK/rclone.conf"
: >"$RCLONE_CONFIG"
export RCLONE_CONFIG_MINIO_TYPE=s3 RCLONE_CONFIG_MINIO_PROVIDER=Minio \
	RCLONE_CONFIG_MINIO_ENDPOINT="http://$ENDPOINT" RCLONE_CONFIG_MINIO_ACCESS_KEY_ID=$ACCESS \
	RCLONE_CONFIG_MINIO_SECRET_ACCESS_KEY=$SECRET RCLONE_CONFIG_MINIO_REGION=us-east-1
# AWS_CA_BUNDLE from the environment would make rclone's S3 client fail on a
# plain-HTTP endpoint; MinIO here is local and not TLS.
RCLONE=(env -u AWS_CA_BUNDLE rclone)

# timed NAME CMD...: measure (lib.sh) CMD, then append "secs rss_kib" to
# $WORK/NAME.times (CMD's output is in $WORK/NAME.log).
timed() {
	local name=$1 secs rss
	measure "$@"
	secs=${name}_SECS rss=${name}_RSS
	printf '%s %s\n' "${!secs}" "${!rss}" >>"$WORK/$name.times"
}

run_holdfast() {
	"${RCLONE[@]}" mkdir "minio:hf-$1"
	timed holdfast "$HOLDFAST" restore --store "$WORK/store" --key-file "$WORK/key" \
		--snapshot "$SNAPSHOT" --to "s3://hf-$1/" --config "$WORK/target.hcl"
	grep -q "restored $DATA_FILES objects" "$WORK/holdfast.log" ||
		die "holdfast restored the wrong number of objects: $(cat "$WORK/holdfast.log")"
}
run_rclone() {
	"${RCLONE[@]}" mkdir "minio:rc-$1"
	timed rclone "${RCLONE[@]}" copy "$DATA" "minio:rc-$1/$(basename "$DATA")"
}

for round in $(seq 1 "$ROUNDS"); do
	if [ $((round % 2)) = 1 ]; then
		run_holdfast "$round"
		run_rclone "$round"
	else
		run_rclone "$round"
		run_holdfast "$round"
	fi
	# Keep only the last round's buckets, for the checks below.
	if [ "$round" -lt "$ROUNDS" ]; then
		"${RCLONE[@]}" purge "minio:hf-$round"
		"${RCLONE[@]}" purge "minio:rc-$round"
	fi
done

# --- checks ------------------------------------------------------------------
for b in "hf-$ROUNDS" "rc-$ROUNDS"; do
	size=$("${RCLONE[@]}" size --json "minio:$b")
	count=$(printf '%s' "$size" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
	bytes=$(printf '%s' "$size" | sed -n 's/.*"bytes":\([0-9]*\).*/\1/p')
	if [ "$count" != "$DATA_FILES" ] || [ "$bytes" != "$CONTENT_BYTES" ]; then
		die "bucket $b holds $count objects, $bytes bytes; want $DATA_FILES, $CONTENT_BYTES"
	fi
done
log "checking bucket hf-$ROUNDS against the data set byte for byte (not timed)"
"${RCLONE[@]}" check --one-way --download "$DATA" "minio:hf-$ROUNDS/$(basename "$DATA")" >"$WORK/check.log" 2>&1 ||
	die "holdfast's bucket differs from the data set: $(tail -n 20 "$WORK/check.log")"

# --- report ------------------------------------------------------------------
# median FILE: the median seconds of a .times file, and the peak RSS (KiB).
median() { sort -n "$1" | awk '{ s[NR] = $1; if ($2 > r) r = $2 } END { m = (NR % 2) ? s[(NR + 1) / 2] : (s[NR / 2] + s[NR / 2 + 1]) / 2; printf "%.2f %d\n", m, r }'; }
read -r HF_SECS HF_RSS < <(median "$WORK/holdfast.times")
read -r RC_SECS RC_RSS < <(median "$WORK/rclone.times")
RATIO=$(awk -v h="$HF_SECS" -v r="$RC_SECS" 'BEGIN { printf "%.2f", r / h }')
row() { # name secs rss_kib
	awk -v n="$1" -v s="$2" -v b="$CONTENT_BYTES" -v r="$3" \
		'BEGIN { printf "| %-34s | %8.2f | %8.1f | %8.1f |\n", n, s, b / 1e6 / s, r / 1024 }'
}
{
	printf 'Holdfast restore benchmark, %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf 'machine: %s cores, %s RAM, kernel %s; work dir on %s; caches dropped: %s\n' \
		"$(nproc)" "$(free -h | awk '/^Mem:/ { print $2 }')" "$(uname -r)" "$FSTYPE" "$CACHES_DROPPED"
	printf 'load before the run: %s (1, 5, 15 min); busiest processes: %s\n' "$LOAD_BEFORE" "$TOP_BEFORE"
	printf 'holdfast: %s; %s; minio: %s\n' "$(git describe --always --dirty 2>/dev/null || echo 'no commit')" \
		"$(rclone version 2>/dev/null | head -n 1)" "$("$MINIO" --version | head -n 1)"
	printf 'data: %s files, %s bytes of content, %s; MinIO on 127.0.0.1, same machine\n' "$DATA_FILES" "$CONTENT_BYTES" "$SPEC"
	printf '\n'
	printf '| %-34s | %8s | %8s | %8s |\n' "run (median of $ROUNDS rounds)" seconds MB/s 'peak MiB'
	printf '|%s|%s|%s|%s|\n' "------------------------------------" "----------" "----------" "----------"
	row "holdfast restore --to s3://" "$HF_SECS" "$HF_RSS"
	row "rclone copy DIR minio:" "$RC_SECS" "$RC_RSS"
	printf '\nevery round (seconds, peak KiB):\n'
	printf '  holdfast: %s\n' "$(paste -sd ';' "$WORK/holdfast.times")"
	printf '  rclone:   %s\n' "$(paste -sd ';' "$WORK/rclone.times")"
	printf 'goal:\n'
	if awk -v x="$RATIO" 'BEGIN { exit !(x >= 1.0) }'; then
		printf '  met:     holdfast restore >= 1.0x rclone copy'"'"'s throughput: %sx\n' "$RATIO"
	else
		printf '  NOT MET: holdfast restore >= 1.0x rclone copy'"'"'s throughput: %sx\n' "$RATIO"
	fi
	printf '\nholdfast: %s\n' "$(grep '^restored .* of snapshot' "$WORK/holdfast.log")"
	printf 'check: %s\n' "$(grep -E 'matching files|differences found' "$WORK/check.log" | tr '\n' ' ')"
} | tee "$RESULTS"
log "results written to $RESULTS"
