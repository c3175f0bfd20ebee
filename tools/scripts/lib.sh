# shellcheck shell=bash disable=SC2034  # FSTYPE and CACHES_DROPPED are read by the sourcing script
# lib.sh: shell helpers the benchmark scripts share. Source it after
# defining die().

# remove_sealed_dir DIR: clear the store's inode flags below DIR, then
# remove it (a sealed store cannot be removed otherwise).
remove_sealed_dir() {
	if [ -n "${1:-}" ] && [ -d "$1" ]; then
		chattr -R -i -a "$1" 2>/dev/null || true
		rm -rf "$1"
	fi
}

# require_flag_fs DIR: die unless DIR is on a filesystem with inode flags;
# sets FSTYPE (stat's name for it; ext4 shows as ext2/ext3).
require_flag_fs() {
	FSTYPE=$(stat -f -c %T "$1")
	case $FSTYPE in
	ext2/ext3 | xfs | btrfs) ;;
	*) die "$1 is on $FSTYPE; set TMPDIR to a directory on ext4, xfs or btrfs" ;;
	esac
}

# drop_caches: sync and drop the page cache; CACHES_DROPPED says whether it
# could.
CACHES_DROPPED=yes
drop_caches() {
	sync
	if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
		CACHES_DROPPED="no (not permitted: the data may come from the page cache)"
	fi
}

# measure VAR CMD...: run CMD after dropping caches (after a sync only
# with WARM=1); set VAR_SECS and VAR_RSS (KiB) from wall time (command +
# sync) and GNU time's peak RSS. The caller defines log, die and WORK
# (CMD's output goes to $WORK/VAR.log).
measure() {
	local var=$1 start end
	shift
	if [ "${WARM:-}" = 1 ]; then sync; else drop_caches; fi
	log "running: $*"
	start=$(date +%s.%N)
	if ! /usr/bin/time -f '%M' -o "$WORK/time.out" "$@" >"$WORK/$var.log" 2>&1; then
		tail -n 20 "$WORK/$var.log" >&2
		die "$var failed"
	fi
	sync
	end=$(date +%s.%N)
	printf -v "${var}_SECS" '%s' "$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')"
	printf -v "${var}_RSS" '%s' "$(tail -n 1 "$WORK/time.out")"
}
