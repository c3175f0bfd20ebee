#!/usr/bin/env bash
# The sh -c '... "$0"' snippets are meant to expand in the inner shell:
# shellcheck disable=SC2016
# demo.sh: the end-to-end tour of a Holdfast store on this machine, run by
# `make demo` (which installs the packages and builds out/bin/holdfast first).
#
# It creates a store under ${TMPDIR:-/tmp} (the filesystem must support inode
# flags: ext4, xfs or btrfs), stores two snapshots, lists and reads them back,
# verifies the store, then shows that the kernel refuses to delete or change
# sealed files, for root and for a root process without CAP_LINUX_IMMUTABLE.
# Every step is checked: anything unexpected (a failed command, or an rm that
# succeeded) stops the demo with a non-zero exit.
#
# Needs root: sealing sets inode flags (CAP_LINUX_IMMUTABLE).
#
# Clean-up: the store ends full of immutable files that `rm -rf` cannot
# remove. On success the demo clears the flags itself (chattr -R -i -a, which
# only works because it still holds CAP_LINUX_IMMUTABLE) and removes its work
# directory. Set HOLDFAST_DEMO_KEEP=1 to keep it; on failure it is always kept
# for inspection, and the demo prints the command that removes it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
HOLDFAST=${HOLDFAST:-$PWD/out/bin/holdfast}

CHECKS=0
STEP=0
WORK=

section() {
	STEP=$((STEP + 1))
	printf '\n==> %d. %s\n' "$STEP" "$*"
}
say() { printf '    %s\n' "$*"; }
ok() {
	CHECKS=$((CHECKS + 1))
	printf '    [ok] %s\n' "$*"
}
fail() {
	printf '\n    [FAILED] %s\n' "$*" >&2
	exit 1
}
# show prints a command line as one would type it: plain words as they are,
# other printable words in single quotes, anything else as $'...', so awkward
# names are visible. A lone | or >> is printed as the operator it stands for.
show() {
	local q=() a
	for a in "$@"; do
		if [[ $a == '|' || $a == '>>' || $a =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then
			q+=("$a")
		elif [[ $a != *"'"* && $a =~ ^[[:print:]]+$ ]]; then
			q+=("'$a'")
		else
			q+=("$(printf '%q' "$a")")
		fi
	done
	printf '    $ %s\n' "${q[*]}"
}
indent() { sed 's/^/      /'; }
# hf runs holdfast, echoing the command and indenting its output.
hf() {
	show holdfast "$@"
	"$HOLDFAST" "$@" 2>&1 | indent
	return "${PIPESTATUS[0]}"
}
# hf_out runs holdfast and captures stdout in $OUT (also shown).
hf_out() {
	show holdfast "$@"
	OUT=$("$HOLDFAST" "$@")
	printf '%s\n' "$OUT" | indent
}

# expect_eperm DESCRIPTION CMD...: CMD must fail with "Operation not permitted".
expect_eperm() {
	local desc=$1 out rc=0
	shift
	show "$@"
	out=$("$@" 2>&1) || rc=$?
	[ -n "$out" ] && printf '%s\n' "$out" | indent
	if [ "$rc" -eq 0 ]; then
		fail "UNEXPECTED: '$desc' succeeded; the kernel did not protect the store"
	fi
	case $out in
	*"Operation not permitted"*) ok "$desc: refused (EPERM)" ;;
	*) fail "'$desc' failed, but not with 'Operation not permitted' (exit $rc)" ;;
	esac
}

on_exit() {
	local rc=$?
	if [ "$rc" -ne 0 ] && [ -n "$WORK" ]; then
		printf '\ndemo FAILED (exit %d). Work directory kept for inspection: %s\n' "$rc" "$WORK" >&2
		printf 'remove it with: chattr -R -i -a %q && rm -rf %q\n' "$WORK" "$WORK" >&2
	fi
}
trap on_exit EXIT

# ---------------------------------------------------------------------------
section "Preconditions"
[ "$(id -u)" -eq 0 ] || fail "the demo needs root (sealing needs CAP_LINUX_IMMUTABLE); run it as root"
[ -x "$HOLDFAST" ] || fail "$HOLDFAST is missing; run 'make build' (or 'make demo')"
for tool in capsh chattr lsattr getfattr setfattr cmp; do
	command -v "$tool" >/dev/null || fail "$tool is missing; run 'make setup'"
done
capsh --has-p=cap_linux_immutable 2>/dev/null || fail "this process lacks CAP_LINUX_IMMUTABLE (a container without it?)"
ok "root with CAP_LINUX_IMMUTABLE; holdfast at $HOLDFAST"

# ---------------------------------------------------------------------------
section "A work directory on a filesystem with inode flags"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/holdfast-demo.XXXXXX")
cd "$WORK"
FSTYPE=$(stat -f -c %T "$WORK")
say "work directory: $WORK"
say "filesystem type (stat -f -c %T): $FSTYPE   (ext4 shows as ext2/ext3)"
case $FSTYPE in
ext2/ext3 | xfs | btrfs) ok "$FSTYPE supports FS_IMMUTABLE_FL and FS_APPEND_FL" ;;
*) fail "$FSTYPE has no inode flags; set TMPDIR to a directory on ext4, xfs or btrfs" ;;
esac

# ---------------------------------------------------------------------------
section "Sample data, including an awkward file name"
AWKWARD=$'data/odd names/Quarterly report (final)\t\xff.txt'
mkdir -p data/docs data/mail data/photos "data/odd names"
printf 'Holdfast demo\nversion 1 of the readme\n' >data/docs/readme.txt
for i in $(seq 1 2000); do printf 'From: user%d@example.org\nSubject: message %d\n\nbody %d\n\n' "$i" "$i" "$i"; done >data/mail/inbox.mbox
head -c $((20 << 20)) /dev/urandom >data/photos/holiday.jpg
printf 'revenue: 42\n' >"$AWKWARD"
cp data/docs/readme.txt readme.v1 # kept outside the tree to compare later
find data -type f -print0 | sort -z | xargs -0 ls -l --quoting-style=c | indent
ok "4 files, one named with a tab and a byte that is not UTF-8"

# ---------------------------------------------------------------------------
section "Create the store (holdfast store init)"
hf store init store --key-file demo.key
[ -s demo.key ] || fail "no key file was created"
ok "key file demo.key created (mode $(stat -c %a demo.key))"
say "directories that only grow carry the append-only flag 'a'; the config is immutable 'i':"
lsattr -d store store/packs store/snapshots store/retention store/holdfast-store 2>&1 | indent

# ---------------------------------------------------------------------------
section "First snapshot (holdfast store put --retain 30d)"
hf_out store put store --key-file demo.key --source laptop --retain 30d data
SNAP1=$(sed -n 's/^snapshot \([^ ]*\) committed.*/\1/p' <<<"$OUT")
[ -n "$SNAP1" ] || fail "no snapshot ID in the put output"
PACKS1=$(find store/packs -type f | wc -l)
ok "snapshot $SNAP1 committed; $PACKS1 sealed pack(s), $(du -sh store | cut -f1) on disk"

# ---------------------------------------------------------------------------
section "Change one file, second snapshot: only new chunks are written"
printf 'version 2 of the readme\n' >>data/docs/readme.txt
say "\$ printf 'version 2 of the readme\\n' >>data/docs/readme.txt"
hf_out store put store --key-file demo.key --source laptop --retain 30d data
SNAP2=$(sed -n 's/^snapshot \([^ ]*\) committed.*/\1/p' <<<"$OUT")
if [ -z "$SNAP2" ] || [ "$SNAP2" = "$SNAP1" ]; then fail "no second snapshot ID"; fi
PACKS2=$(find store/packs -type f | wc -l)
say "packs: $PACKS1 after the first snapshot, $PACKS2 after the second"
[ "$PACKS2" -le $((PACKS1 + 1)) ] || fail "the second snapshot rewrote unchanged data ($PACKS1 -> $PACKS2 packs)"
ok "snapshot $SNAP2 added at most one pack: unchanged chunks were deduplicated"

# ---------------------------------------------------------------------------
section "List snapshots and objects (holdfast store ls)"
hf store ls store --key-file demo.key
hf_out store ls store --key-file demo.key "$SNAP1"
grep -qF '"data/odd names/Quarterly report (final)\t\xff.txt"' <<<"$OUT" ||
	fail "ls does not show the awkward key quoted"
ok "the awkward key is listed Go-quoted, on one line"

# ---------------------------------------------------------------------------
section "Read objects back (holdfast store cat) and compare with cmp"
check_cat() { # SNAPSHOT KEY ORIGINAL
	show holdfast store cat store --key-file demo.key "$1" "$2" '|' cmp - "$3"
	"$HOLDFAST" store cat store --key-file demo.key "$1" "$2" | cmp - "$3" ||
		fail "object $2 of $1 differs from $3"
	ok "$(printf '%q' "$2") of $1 is byte-identical to $(printf '%q' "$3")"
}
check_cat "$SNAP1" data/photos/holiday.jpg data/photos/holiday.jpg
check_cat "$SNAP1" data/docs/readme.txt readme.v1
check_cat "$SNAP2" data/docs/readme.txt data/docs/readme.txt
check_cat "$SNAP1" "$AWKWARD" "$AWKWARD"
check_cat "$SNAP2" '"data/odd names/Quarterly report (final)\t\xff.txt"' "$AWKWARD"

# ---------------------------------------------------------------------------
section "Verify every pack, chunk and manifest (holdfast store verify)"
hf store verify store --key-file demo.key
ok "verify found no problem"

# ---------------------------------------------------------------------------
section "Kernel protection: root cannot delete or change sealed files"
PACK=$(find store/packs -type f | sort | head -n 1)
MANIFEST=store/snapshots/$SNAP1.snap
say "a sealed pack and a committed manifest carry FS_IMMUTABLE_FL ('i'):"
lsattr "$PACK" "$MANIFEST" 2>&1 | indent
say "their directories carry FS_APPEND_FL ('a'):"
lsattr -d "$(dirname "$PACK")" store/snapshots 2>&1 | indent
say "retention travels with the manifest as xattrs, set before the seal:"
getfattr -d -m '^user\.holdfast\.' "$MANIFEST" 2>&1 | indent
say "as root, still holding CAP_LINUX_IMMUTABLE:"
expect_eperm "rm -f of a sealed pack" rm -f "$PACK"
expect_eperm "rm -f of a manifest" rm -f "$MANIFEST"
expect_eperm "appending to a sealed pack" sh -c 'echo garbage >>"$0"' "$PACK"
expect_eperm "truncating a sealed pack" truncate -s 0 "$PACK"
expect_eperm "renaming a manifest away" mv "$MANIFEST" store/snapshots/gone.snap
expect_eperm "rewriting the retention xattr" setfattr -n user.holdfast.retain_until -v 2000-01-01T00:00:00Z "$MANIFEST"
say "root could still clear the flag while it holds CAP_LINUX_IMMUTABLE (that is the"
say "prune path in the maintenance window). After lockdown every other process runs"
say "without it in its bounding set, and then even root cannot:"
show capsh --drop=cap_linux_immutable -- -c 'capsh --has-b=cap_linux_immutable'
if capsh --drop=cap_linux_immutable -- -c 'capsh --has-b=cap_linux_immutable' 2>&1 | indent; then
	fail "capsh did not drop cap_linux_immutable from the bounding set"
fi
ok "cap_linux_immutable is gone from the bounding set in that shell (and cannot come back)"
NOCAP=(capsh --drop=cap_linux_immutable --)
expect_eperm "chattr -i of a sealed pack without the capability" "${NOCAP[@]}" -c 'chattr -i "$0"' "$PACK"
expect_eperm "chattr -i of a manifest without the capability" "${NOCAP[@]}" -c 'chattr -i "$0"' "$MANIFEST"
expect_eperm "chattr -a of snapshots/ without the capability" "${NOCAP[@]}" -c 'chattr -a "$0"' store/snapshots
expect_eperm "rm -f of a sealed pack without the capability" "${NOCAP[@]}" -c 'rm -f "$0"' "$PACK"
expect_eperm "rm -f of a manifest without the capability" "${NOCAP[@]}" -c 'rm -f "$0"' "$MANIFEST"
if [ ! -f "$PACK" ] || [ ! -f "$MANIFEST" ]; then fail "a sealed file vanished"; fi
for f in "$PACK" "$MANIFEST"; do
	lsattr "$f" | awk '{ exit !($1 ~ /i/) }' || fail "$f lost its immutable flag"
done
ok "the pack and the manifest are still there, still immutable"
hf store verify store --key-file demo.key
ok "verify still finds nothing wrong"

# ---------------------------------------------------------------------------
section "Prune, dry run (holdfast store prune --dry-run)"
hf_out store prune store --key-file demo.key --dry-run
grep -q 'would remove 0 expired' <<<"$OUT" || fail "prune would remove a snapshot that is still retained"
ok "nothing is due: both snapshots are retained for 30 days, and the newest of each source is always kept"

# ---------------------------------------------------------------------------
section "Done"
if [ "${HOLDFAST_DEMO_KEEP:-0}" = 1 ]; then
	say "work directory kept (HOLDFAST_DEMO_KEEP=1): $WORK"
	say "remove it with: chattr -R -i -a $(printf '%q' "$WORK") && rm -rf $(printf '%q' "$WORK")"
else
	cd /
	say "cleaning up: chattr -R -i -a $WORK && rm -rf $WORK"
	chattr -R -i -a "$WORK"
	rm -rf "$WORK"
	say "(set HOLDFAST_DEMO_KEEP=1 to keep the store for a look around)"
fi
WORK=
printf '\ndemo passed: %d checks\n' "$CHECKS"
