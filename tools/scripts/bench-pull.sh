#!/usr/bin/env bash
# bench-pull.sh: how fast does `holdfast pull` bring a bucket into a store,
# next to `rclone copy` of the same bucket to a local directory? Run by
# `make bench-pull` (which installs the packages, builds MinIO and holdfast
# first).
#
# A MinIO server (the pinned build from setup.sh) starts on 127.0.0.1 with a
# fresh data directory; tools/benchpull fills bucket "bench" with 8 x 64 MiB,
# 512 x 1 MiB and 5,000 x 4 KiB objects of deterministic, incompressible
# bytes (1,056 MiB). Then, in this order:
#
#   holdfast pull (full)      into a fresh store
#   rclone copy (full)        into a fresh directory
#   holdfast pull (no change) the same bucket again: nothing to fetch
#   rclone copy (no change)   into the same directory again
#   both no-change runs again, without dropping caches ("warm")
#   bare GET                  every object, 4 in parallel, to nowhere (the
#                             ceiling of a full pull on this machine)
#   bare listing              the bucket listed, nothing read (the ceiling
#                             of a no-change pull)
#
# Each run starts after dropping the page cache (when allowed; not for the
# warm runs) and ends with `sync`; wall time covers both, peak RSS comes from GNU time. rclone is
# Debian's, configured through RCLONE_CONFIG_MINIO_* variables (its defaults:
# 4 transfers, size + modification time compare). holdfast uses the
# source's default of 4 parallel GETs.
#
# Goals (issue 3): full pull at least 1.3x rclone's throughput; no-change
# re-pull at most 0.2x rclone's time; pull peak RSS at most 96 MiB. The table
# and whether each goal was met are printed and written to out/bench-pull.txt.
# Needs root (the store seals files). Everything is removed afterwards.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
HOLDFAST=${HOLDFAST:-$REPO/out/bin/holdfast}
GO=${GO:-go}
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/holdfast"
MINIO=${MINIO:-$CACHE_DIR/bin/minio}
RESULTS="$REPO/out/bench-pull.txt"
BENCHPULL="$REPO/out/bin/benchpull"
ACCESS=holdfast-bench
SECRET=holdfast-bench-secret

log() { printf 'bench-pull: %s\n' "$*" >&2; }
die() {
	printf 'bench-pull: error: %s\n' "$*" >&2
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
mkdir -p "$REPO/out/bin"
CGO_ENABLED=0 "$GO" build -o "$BENCHPULL" ./tools/benchpull

WORK=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-bench-pull.XXXXXX")
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

# --- MinIO and the data set --------------------------------------------------
PORT=$("$BENCHPULL" -free-port)
CPORT=$("$BENCHPULL" -free-port)
ENDPOINT=127.0.0.1:$PORT
mkdir -p "$WORK/minio-data"
MINIO_ROOT_USER=$ACCESS MINIO_ROOT_PASSWORD=$SECRET MINIO_BROWSER=off MINIO_UPDATE=off \
	"$MINIO" server --quiet --address "$ENDPOINT" --console-address "127.0.0.1:$CPORT" "$WORK/minio-data" \
	>"$WORK/minio.log" 2>&1 &
MINIO_PID=$!
"$BENCHPULL" -endpoint "$ENDPOINT" -wait 60s || die "minio not ready: $(cat "$WORK/minio.log")"
log "MinIO $("$MINIO" --version | head -n 1) on $ENDPOINT; uploading the data set"
BENCH_ACCESS_KEY=$ACCESS BENCH_SECRET_KEY=$SECRET "$BENCHPULL" -endpoint "$ENDPOINT" -bucket bench >&2
SPEC=$("$BENCHPULL" -print-spec | paste -sd ';' -)
CONTENT_BYTES=$((8 * 64 * 1048576 + 512 * 1048576 + 5000 * 4096))
OBJECTS=$((8 + 512 + 5000))

# --- holdfast and rclone set-up ----------------------------------------------
"$HOLDFAST" store init "$WORK/store" --key-file "$WORK/key" >/dev/null
cat >"$WORK/cfg.hcl" <<HCL
appliance { name = "bench" }
source "bench" {
  s3 {
    endpoint   = "$ENDPOINT"
    bucket     = "bench"
    access_key = "$ACCESS"
    secret_key = "$SECRET"
    tls        = false
  }
  schedule = "every 6h"
  retention {
    all_for = "1d"
  }
}
HCL
export RCLONE_CONFIG="$WORK/rclone.conf"
: >"$RCLONE_CONFIG"
export RCLONE_CONFIG_MINIO_TYPE=s3 RCLONE_CONFIG_MINIO_PROVIDER=Minio \
	RCLONE_CONFIG_MINIO_ENDPOINT="http://$ENDPOINT" RCLONE_CONFIG_MINIO_ACCESS_KEY_ID=$ACCESS \
	RCLONE_CONFIG_MINIO_SECRET_ACCESS_KEY=$SECRET RCLONE_CONFIG_MINIO_REGION=us-east-1


PULL=("$HOLDFAST" pull --config "$WORK/cfg.hcl" --store "$WORK/store" --key-file "$WORK/key")
# AWS_CA_BUNDLE from the environment would make rclone's S3 client fail on a
# plain-HTTP endpoint; the bucket is local and not TLS.
RCLONE=(env -u AWS_CA_BUNDLE rclone copy minio:bench "$WORK/rclone")
measure HF_FULL "${PULL[@]}"
measure RC_FULL "${RCLONE[@]}"
measure HF_AGAIN "${PULL[@]}"
measure RC_AGAIN "${RCLONE[@]}"
WARM=1 measure HF_WARM "${PULL[@]}"
WARM=1 measure RC_WARM "${RCLONE[@]}"
CEIL=(env BENCH_ACCESS_KEY=$ACCESS BENCH_SECRET_KEY=$SECRET "$BENCHPULL" -endpoint "$ENDPOINT" -bucket bench -workers 4)
measure BARE_GET "${CEIL[@]}" -get-all
measure BARE_LIST "${CEIL[@]}" -list-all
grep -q "listed $OBJECTS objects, read $CONTENT_BYTES bytes" "$WORK/BARE_GET.log" || die "bare GET: $(cat "$WORK/BARE_GET.log")"
grep -q "$OBJECTS objects" "$WORK/HF_FULL.log" || die "full pull did not store $OBJECTS objects: $(cat "$WORK/HF_FULL.log")"
grep -q "0 fetched" "$WORK/HF_AGAIN.log" || die "the no-change pull fetched something: $(grep snapshot "$WORK/HF_AGAIN.log")"
RC_FILES=$(find "$WORK/rclone" -type f | wc -l)
[ "$RC_FILES" -eq "$OBJECTS" ] || die "rclone copied $RC_FILES files, want $OBJECTS"

# --- report ------------------------------------------------------------------
row() { # name secs rss_kib
	awk -v n="$1" -v s="$2" -v b="$CONTENT_BYTES" -v r="$3" \
		'BEGIN { printf "| %-32s | %8.2f | %8.1f | %8.1f |\n", n, s, b / 1e6 / s, r / 1024 }'
}
verdict() { # description ok
	if [ "$2" = 1 ]; then printf '  met:     %s\n' "$1"; else printf '  NOT MET: %s\n' "$1"; fi
}
FULL_RATIO=$(awk -v h="$HF_FULL_SECS" -v r="$RC_FULL_SECS" 'BEGIN { printf "%.2f", r / h }')
AGAIN_RATIO=$(awk -v h="$HF_AGAIN_SECS" -v r="$RC_AGAIN_SECS" 'BEGIN { printf "%.3f", h / r }')
WARM_RATIO=$(awk -v h="$HF_WARM_SECS" -v r="$RC_WARM_SECS" 'BEGIN { printf "%.3f", h / r }')
PEAK_KIB=$((HF_FULL_RSS > HF_AGAIN_RSS ? HF_FULL_RSS : HF_AGAIN_RSS))
PEAK_KIB=$((PEAK_KIB > HF_WARM_RSS ? PEAK_KIB : HF_WARM_RSS))
PEAK_MIB=$(awk -v k="$PEAK_KIB" 'BEGIN { printf "%.1f", k / 1024 }')
{
	printf 'Holdfast pull benchmark, %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf 'machine: %s cores, %s RAM, kernel %s; work dir on %s; caches dropped: %s\n' \
		"$(nproc)" "$(free -h | awk '/^Mem:/ { print $2 }')" "$(uname -r)" "$FSTYPE" "$CACHES_DROPPED"
	printf 'holdfast: %s; %s; minio: %s\n' "$(git describe --always --dirty 2>/dev/null || echo 'no commit')" \
		"$(rclone version 2>/dev/null | head -n 1)" "$("$MINIO" --version | head -n 1)"
	printf 'data: %s objects, %s bytes (%s); MinIO on 127.0.0.1, same machine\n' "$OBJECTS" "$CONTENT_BYTES" "$SPEC"
	printf '\n'
	printf '| %-32s | %8s | %8s | %8s |\n' run seconds MB/s 'peak MiB'
	printf '|%s|%s|%s|%s|\n' "----------------------------------" "----------" "----------" "----------"
	row "holdfast pull (full)" "$HF_FULL_SECS" "$HF_FULL_RSS"
	row "rclone copy (full)" "$RC_FULL_SECS" "$RC_FULL_RSS"
	row "holdfast pull (no change)" "$HF_AGAIN_SECS" "$HF_AGAIN_RSS"
	row "rclone copy (no change)" "$RC_AGAIN_SECS" "$RC_AGAIN_RSS"
	row "holdfast pull (no change, warm)" "$HF_WARM_SECS" "$HF_WARM_RSS"
	row "rclone copy (no change, warm)" "$RC_WARM_SECS" "$RC_WARM_RSS"
	row "bare parallel GET (ceiling)" "$BARE_GET_SECS" "$BARE_GET_RSS"
	row "bare listing (ceiling)" "$BARE_LIST_SECS" "$BARE_LIST_RSS"
	printf '\n(MB/s of the no-change runs is the data set size over the time taken, for comparison only.)\n'
	printf 'goals:\n'
	verdict "full pull >= 1.3x rclone's throughput: ${FULL_RATIO}x" "$(awk -v x="$FULL_RATIO" 'BEGIN { print (x >= 1.3) ? 1 : 0 }')"
	verdict "no-change re-pull <= 0.2x rclone's time (caches dropped): ${AGAIN_RATIO}x" "$(awk -v x="$AGAIN_RATIO" 'BEGIN { print (x <= 0.2) ? 1 : 0 }')"
	verdict "no-change re-pull <= 0.2x rclone's time (warm): ${WARM_RATIO}x" "$(awk -v x="$WARM_RATIO" 'BEGIN { print (x <= 0.2) ? 1 : 0 }')"
	verdict "pull peak RSS <= 96 MiB: ${PEAK_MIB} MiB" "$(awk -v x="$PEAK_MIB" 'BEGIN { print (x <= 96) ? 1 : 0 }')"
	printf 'against the ceilings on this machine:\n'
	printf '  full pull takes %sx the bare parallel GET; rclone %sx\n' \
		"$(awk -v h="$HF_FULL_SECS" -v c="$BARE_GET_SECS" 'BEGIN { printf "%.2f", h / c }')" \
		"$(awk -v h="$RC_FULL_SECS" -v c="$BARE_GET_SECS" 'BEGIN { printf "%.2f", h / c }')"
	printf '  no-change pull takes %sx the bare listing (warm: %sx)\n' \
		"$(awk -v h="$HF_AGAIN_SECS" -v c="$BARE_LIST_SECS" 'BEGIN { printf "%.2f", h / c }')" \
		"$(awk -v h="$HF_WARM_SECS" -v c="$BARE_LIST_SECS" 'BEGIN { printf "%.2f", h / c }')"
	printf '\nholdfast full:      %s\n' "$(grep 'snapshot' "$WORK/HF_FULL.log" | grep -v '^{' | head -n 1)"
	printf 'holdfast no change: %s\n' "$(grep 'snapshot' "$WORK/HF_AGAIN.log" | grep -v '^{' | head -n 1)"
} | tee "$RESULTS"
log "results written to $RESULTS"
