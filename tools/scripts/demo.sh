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
#
# Then the VFEmail scenario with a real S3 source: it starts the pinned MinIO
# that `make setup` builds (127.0.0.1 only, a free port, a data directory in
# the work directory, root credentials generated for this run; stopped on
# exit), fills bucket "mail" with 50 small mails (one key with a tab, a
# newline and non-ASCII characters) using rclone, pulls it with `holdfast
# pull`, deletes every object as an attacker with the bucket's root
# credentials would, pulls again, and checks that the empty snapshot was
# committed, an alert was logged, the earlier snapshot is under legal hold
# and every deleted mail still reads back byte for byte from the store.
#
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
REPO=$PWD
GO=${GO:-go}
QEMU_PID=

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
# names are visible. A lone |, >> or <, or 2>FILE, is printed as the operator
# it stands for.
show() {
	local q=() a
	for a in "$@"; do
		if [[ $a == '|' || $a == '>>' || $a == '<' || $a =~ ^[A-Za-z0-9_./=:,+@%-]+$ || $a =~ ^2\>[A-Za-z0-9_./-]+$ ]]; then
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

# MinIO for the pull sections; stop_minio is safe to call at any time.
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/holdfast"
MINIO=${MINIO:-$CACHE_DIR/bin/minio}
MINIO_PID=
stop_minio() {
	[ -n "$MINIO_PID" ] || return 0
	kill "$MINIO_PID" 2>/dev/null || true
	local i
	for i in $(seq 1 100); do
		kill -0 "$MINIO_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$MINIO_PID" 2>/dev/null || true
	wait "$MINIO_PID" 2>/dev/null || true
	MINIO_PID=
}

on_exit() {
	local rc=$?
	if [ -n "$QEMU_PID" ]; then
		kill -INT "$QEMU_PID" 2>/dev/null || true
		wait "$QEMU_PID" 2>/dev/null || true
	fi
	stop_minio
	if [ "$rc" -ne 0 ] && [ -n "$WORK" ]; then
		printf '\ndemo FAILED (exit %d). Work directory kept for inspection: %s\n' "$rc" "$WORK" >&2
		printf 'remove it with: chattr -R -i -a %q && rm -rf %q\n' "$WORK" "$WORK" >&2
	fi
}
trap on_exit EXIT
# A background job of a script ignores Ctrl-C; exiting through the EXIT trap
# makes sure MinIO is stopped then too.
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
section "Preconditions"
[ "$(id -u)" -eq 0 ] || fail "the demo needs root (sealing needs CAP_LINUX_IMMUTABLE); run it as root"
[ -x "$HOLDFAST" ] || fail "$HOLDFAST is missing; run 'make build' (or 'make demo')"
for tool in capsh chattr lsattr getfattr setfattr cmp rclone jq timeout; do
	command -v "$tool" >/dev/null || fail "$tool is missing; run 'make setup'"
done
[ -x "$MINIO" ] || fail "$MINIO is missing; run 'make setup' (it builds the pinned MinIO once)"
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
# The VFEmail scenario: a bucket of mail, pulled, then wiped by an attacker.

# free_port prints a port on 127.0.0.1 below the ephemeral range that nothing
# accepts connections on (MinIO's start is retried if it is taken meanwhile).
free_port() {
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	fail "found no free port on 127.0.0.1"
}
# minio_ready PORT: MinIO's readiness endpoint answers 200.
minio_ready() {
	local status
	status=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" &&
		printf "GET /minio/health/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 &&
		head -n 1 <&3' "$1" 2>/dev/null) || return 1
	[[ $status == "HTTP/1."?" 200"* ]]
}
# start_minio sets MINIO_PORT and MINIO_PID; three tries, 60 s each.
start_minio() {
	local try cport i
	mkdir -p minio-data
	for try in 1 2 3; do
		MINIO_PORT=$(free_port)
		cport=$(free_port)
		[ "$cport" != "$MINIO_PORT" ] || continue
		MINIO_ROOT_USER=$S3_ACCESS MINIO_ROOT_PASSWORD=$S3_SECRET MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=on \
			"$MINIO" server --quiet --address "127.0.0.1:$MINIO_PORT" --console-address "127.0.0.1:$cport" \
			"$WORK/minio-data" >>minio.log 2>&1 &
		MINIO_PID=$!
		for i in $(seq 1 600); do
			if minio_ready "$MINIO_PORT"; then return 0; fi
			kill -0 "$MINIO_PID" 2>/dev/null || break
			sleep 0.1
		done
		stop_minio
		say "MinIO did not come up on 127.0.0.1:$MINIO_PORT (try $try of 3)"
	done
	sed 's/^/      minio: /' minio.log >&2
	fail "MinIO did not start (its output is above and in $WORK/minio.log)"
}
# s3 runs rclone against the demo MinIO, configured only through environment
# variables (remote "demo"; an empty config file so that no rclone.conf of
# this machine is read). AWS_CA_BUNDLE, if set, would make rclone's S3 client
# fail on a plain-HTTP endpoint, so it is removed.
s3() {
	env -u AWS_CA_BUNDLE RCLONE_CONFIG="$WORK/rclone.conf" \
		RCLONE_CONFIG_DEMO_TYPE=s3 RCLONE_CONFIG_DEMO_PROVIDER=Minio \
		RCLONE_CONFIG_DEMO_ENDPOINT="http://127.0.0.1:$MINIO_PORT" RCLONE_CONFIG_DEMO_REGION=us-east-1 \
		RCLONE_CONFIG_DEMO_ACCESS_KEY_ID="$S3_ACCESS" RCLONE_CONFIG_DEMO_SECRET_ACCESS_KEY="$S3_SECRET" \
		rclone "$@"
}
show_s3() {
	show rclone "$@"
	s3 "$@" 2>&1 | indent
	return "${PIPESTATUS[0]}"
}
bucket_count() { s3 lsf -R --files-only demo:mail | wc -l; }
# pull_mail LOG: holdfast pull, summary lines in $OUT (shown), logs in LOG.
pull_mail() {
	local rc=0
	show holdfast pull --config mail.hcl --store store --key-file demo.key "2>$1"
	OUT=$("$HOLDFAST" pull --config mail.hcl --store store --key-file demo.key 2>"$1") || rc=$?
	printf '%s\n' "$OUT" | indent
	[ "$rc" -eq 0 ] || fail "holdfast pull exited $rc (its log: $WORK/$1)"
}
# hold_of SNAPSHOT: the HOLD column of `store ls` in $OUT.
hold_of() { awk -v id="$1" '$1 == id { print $7 }' <<<"$OUT"; }

section "An S3 source: MinIO on 127.0.0.1 with a bucket of mail"
S3_ACCESS=demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
S3_SECRET=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
: >rclone.conf
start_minio
MINIO_VERSION=$("$MINIO" --version)
say "MinIO: ${MINIO_VERSION%%$'\n'*}"
say "listening on 127.0.0.1:$MINIO_PORT, data in minio-data/, output in minio.log"
ok "MinIO is ready, with root credentials generated for this run (user $S3_ACCESS)"
say "50 mails for five mailboxes, one with an awkward key (a tab, a newline, non-ASCII):"
MAIL_KEY=$'erin/Drafts/Re: Fwd: Quarterly report (final)\t\n\xe2\x9c\x89 \xc3\xbc.eml'
MAIL_KEY_Q='"erin/Drafts/Re: Fwd: Quarterly report (final)\t\n✉ ü.eml"'
n=0
for user in alice bob carol dave erin; do
	mkdir -p "mail-src/$user/INBOX"
	for i in $(seq 1 10); do
		n=$((n + 1))
		[ "$user/$i" != erin/10 ] || break # the 50th is the awkward one
		{
			printf 'From: sender%d@example.org\nTo: %s@vfemail.example\n' "$n" "$user"
			printf 'Date: %s\n' "$(date -u -R -d "2019-02-$(printf '%02d' $((1 + n % 11))) 0$((n % 10)):12:00")"
			printf 'Message-ID: <%d.%s@example.org>\nSubject: message %d for %s\n\n' "$n" "$user" "$n" "$user"
			for l in $(seq 1 $((n * 7))); do printf 'line %d of message %d, kept for eighteen years\n' "$l" "$n"; done
		} >"mail-src/$user/INBOX/$(printf '%04d' "$i").eml"
	done
done
{
	printf 'From: erin@vfemail.example\nSubject: Re: Fwd: Quarterly report (final)\n\n'
	printf 'revenue: 42; attachment follows\n\n'
	head -c 49152 /dev/urandom | base64
} >mail-awkward.eml
[ "$(find mail-src -type f | wc -l)" -eq 49 ] || fail "expected 49 sample mails in mail-src/"
show_s3 mkdir demo:mail
show_s3 copy mail-src demo:mail
show rclone rcat "demo:mail/$MAIL_KEY" '<' mail-awkward.eml
s3 rcat "demo:mail/$MAIL_KEY" <mail-awkward.eml 2>&1 | indent
show rclone lsf -R --files-only demo:mail '|' wc -l
COUNT=$(bucket_count)
say "  $COUNT"
[ "$COUNT" -eq 50 ] || fail "bucket mail holds $COUNT objects, want 50"
ok "bucket mail holds 50 objects ($(du -cb mail-src mail-awkward.eml | tail -n 1 | cut -f1) bytes)"

# ---------------------------------------------------------------------------
section "Pull the bucket into the store (holdfast pull)"
cat >mail.hcl <<HCL
appliance { name = "holdfast-demo" }
source "mail" {
  s3 {
    endpoint   = "127.0.0.1:$MINIO_PORT"
    bucket     = "mail"
    access_key = "$S3_ACCESS"
    secret_key = "$S3_SECRET"
    tls        = false
  }
  schedule = "every 6h"
  retention {
    all_for = "30d"
  }
}
HCL
say "mail.hcl (the secret is shown as ...; on a real appliance these are read-only"
say "credentials, see the README, \"Pointing Holdfast at a bucket\"):"
sed 's/^\( *secret_key *= \).*/\1"..."/' mail.hcl | indent
pull_mail pull-1.log
MAIL1=$(sed -n 's/^mail: snapshot \([^ :]*\): 50 objects, .* complete$/\1/p' <<<"$OUT")
[ -n "$MAIL1" ] || fail "the pull did not commit a complete snapshot of 50 objects"
UNTIL=$(sed -n 's/.*; retain until \([^;]*\); complete$/\1/p' <<<"$OUT")
LEFT=$(($(date -u -d "$UNTIL" +%s) - $(date -u +%s)))
if [ "$LEFT" -le $((30 * 86400 - 600)) ] || [ "$LEFT" -gt $((30 * 86400)) ]; then
	fail "retain-until '$UNTIL' is not 30 days from now"
fi
ok "snapshot $MAIL1 of source mail committed: 50 objects, kept until $UNTIL (30 days)"
hf store ls store --key-file demo.key
show holdfast store ls store --key-file demo.key "$MAIL1"
OUT=$("$HOLDFAST" store ls store --key-file demo.key "$MAIL1")
{
	head -n 5 <<<"$OUT"
	printf '...\n'
	grep -F 'erin/Drafts/' <<<"$OUT"
	tail -n 1 <<<"$OUT"
} | indent
grep -qF "$MAIL_KEY_Q" <<<"$OUT" || fail "ls does not show the awkward key Go-quoted"
ok "the awkward key is in the snapshot, listed Go-quoted on one line"

# ---------------------------------------------------------------------------
section "The attacker wipes the bucket (VFEmail, February 2019)"
say "someone with the bucket's root credentials deletes every object; the bucket"
say "is not versioned, so nothing of the mail is left at the source:"
show_s3 delete demo:mail
COUNT=$(bucket_count)
show rclone lsf -R --files-only demo:mail '|' wc -l
say "  $COUNT"
[ "$COUNT" -eq 0 ] || fail "the bucket still holds $COUNT objects"
ok "bucket mail is empty"
say "the next scheduled pull runs as usual:"
pull_mail pull-2.log
MAIL2=$(sed -n 's/^mail: snapshot \([^ :]*\): 0 objects, .* complete$/\1/p' <<<"$OUT")
if [ -z "$MAIL2" ] || [ "$MAIL2" = "$MAIL1" ]; then fail "the pull did not commit a new, empty snapshot"; fi
ok "a new, empty snapshot $MAIL2 was committed: the pull records what it saw"
grep -qF "mail: ALERT mass change: 50 of 50 objects gone, 0 changed since $MAIL1; 1 earlier snapshots under legal hold" <<<"$OUT" ||
	fail "the pull did not report the mass change"
ok "the pull reported the mass change on stdout"
say "the pull's log (JSON lines on stderr) carries the alert for log shippers and the console:"
show jq 'select(.alert == true)' pull-2.log
ALERT=$(jq 'select(.alert == true)' pull-2.log) || fail "pull-2.log is not JSON lines"
printf '%s\n' "$ALERT" | indent
# Slurped: jq 1.6's -e looks only at the last output.
jq -e -s --arg s1 "$MAIL1" --arg s2 "$MAIL2" '[.[] | select(.alert == true and ."@level" == "error"
	and .kind == "mass-change" and .source == "mail" and .snapshot == $s2 and .gone == 50
	and .held == [$s1])] | length == 1' pull-2.log >/dev/null ||
	fail "no mass-change alert for $MAIL2 holding $MAIL1 in pull-2.log"
ok "an alert was logged (level error, alert=true, kind mass-change), naming the held snapshot"
hf_out store ls store --key-file demo.key
[ "$(hold_of "$MAIL1")" = yes ] || fail "$MAIL1 is not under legal hold"
[ "$(hold_of "$MAIL2")" = no ] || fail "the new snapshot $MAIL2 is under legal hold"
for s in "$SNAP1" "$SNAP2"; do
	[ "$(hold_of "$s")" = no ] || fail "snapshot $s of another source was put under legal hold"
done
ok "$MAIL1 is under legal hold (HOLD yes); the other sources' snapshots are untouched"
say "the hold is an encrypted retention record, sealed like the rest (such records"
say "can only add a hold or lengthen retention, and prune keeps a held snapshot):"
HOLDREC=(store/retention/"$MAIL1".*.ext)
[ -f "${HOLDREC[0]}" ] || fail "no retention record for $MAIL1 under store/retention/"
lsattr "${HOLDREC[@]}" 2>&1 | indent
lsattr "${HOLDREC[@]}" | awk '{ if ($1 !~ /i/) bad = 1 } END { exit bad }' || fail "a legal-hold record is not immutable"
ok "the legal-hold record is immutable"
show holdfast store diff store --key-file demo.key "$MAIL1" "$MAIL2" '|' tail -n 1
OUT=$("$HOLDFAST" store diff store --key-file demo.key "$MAIL1" "$MAIL2")
tail -n 1 <<<"$OUT" | indent
grep -q '^0 added, 0 changed, 50 removed, 0 unchanged' <<<"$(tail -n 1 <<<"$OUT")" ||
	fail "diff does not show all 50 objects removed"
ok "diff: every one of the 50 mails was removed at the source"

# ---------------------------------------------------------------------------
section "The mail is still in the store: read the first snapshot back"
check_cat "$MAIL1" "$MAIL_KEY_Q" mail-awkward.eml
check_cat "$MAIL1" erin/INBOX/0009.eml mail-src/erin/INBOX/0009.eml
say "and the other 48 the same way (not shown one by one):"
show holdfast store cat store --key-file demo.key "$MAIL1" KEY '|' cmp - mail-src/KEY
n=0
while IFS= read -r -d '' f; do
	key=${f#mail-src/}
	"$HOLDFAST" store cat store --key-file demo.key "$MAIL1" "$key" | cmp - "$f" ||
		fail "object $key of $MAIL1 differs from $f"
	n=$((n + 1))
done < <(find mail-src -type f -print0 | sort -z)
[ "$n" -eq 49 ] || fail "compared $n mails, want 49"
ok "all 50 mails of $MAIL1 are byte-identical to the ones the attacker deleted"

# ---------------------------------------------------------------------------
section "Verify the whole store again (holdfast store verify)"
hf store verify store --key-file demo.key
ok "verify found no problem in the store with both sources"

# ---------------------------------------------------------------------------
section "The appliance: boot the QEMU image, configure it over the serial line"
say "bucket appliance gets the 49 sample mails again; the appliance pulls it"
show_s3 mkdir demo:appliance
show_s3 copy mail-src demo:appliance
say "building the qemu-x86_64 image (what make image does; cached parts are reused) ..."
( cd "$REPO" && "$GO" build -o "$WORK/holdfast-image" ./images/cmd/holdfast-image ) || fail "building holdfast-image failed"
show holdfast-image build -board qemu-x86_64 -out "$WORK/appliance"
( cd "$REPO" && "$WORK/holdfast-image" build -board qemu-x86_64 -out "$WORK/appliance" ) >appliance-build.log 2>&1 ||
	fail "image build failed (log: $WORK/appliance-build.log)"
grep -E "^(image|PCR 11) " appliance-build.log | indent
show holdfast-image qemu -board qemu-x86_64 -out "$WORK/appliance" "&"
( cd "$REPO" && exec "$WORK/holdfast-image" qemu -board qemu-x86_64 -out "$WORK/appliance" ) >appliance-console.log 2>&1 &
QEMU_PID=$!
SOCK="$WORK/appliance/qemu-x86_64/vm/serial.sock"
# holdfast-image logs "VM running" once the accelerator is settled (a probe
# of this host's KVM, cached per boot; TCG where KVM cannot run the guest;
# HOLDFAST_ACCEL=auto|kvm|tcg overrides) and the serial socket is there.
for i in $(seq 1 900); do
	grep -q "VM running" appliance-console.log 2>/dev/null && break
	kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU did not start (log: $WORK/appliance-console.log)"
	sleep 0.2
done
[ -S "$SOCK" ] || fail "no serial socket $SOCK (log: $WORK/appliance-console.log)"
ACCEL=$(grep -o 'accel=[a-z]*' appliance-console.log | tail -n 1)
say "the VM runs (${ACCEL:-accel unknown}); its console is on $SOCK"
grep -E "kvm probe|KVM cannot run" appliance-console.log | indent || true
cat >appliance.hcl <<CFG
appliance { name = "holdfast-demo" }
source "mail" {
  s3 {
    endpoint   = "10.0.2.2:$MINIO_PORT"   # the host's 127.0.0.1, seen from QEMU's user network
    bucket     = "appliance"
    access_key = "$S3_ACCESS"
    secret_key = "$S3_SECRET"
    tls        = false
  }
  schedule = "every 1h"
  retention {
    all_for = "30d"
  }
}
CFG
say "config pushed over the serial socket (the appliance validates, shows a summary, we answer yes):"
show holdfast console push --port "$SOCK" --yes appliance.hcl
"$HOLDFAST" console push --port "$SOCK" --yes --timeout 5m appliance.hcl 2>&1 | indent ||
	fail "console push failed (console log: $WORK/appliance-console.log)"
say "the appliance shows its paper recovery key once; the operator types 'written':"
show echo written '|' holdfast console attach --port "$SOCK"
echo written | timeout 20 "$HOLDFAST" console attach --port "$SOCK" >/dev/null 2>&1 || true
say "formatting a blank data disk needs its serial number typed at the console:"
show echo format HOLDFAST-DATA0 '|' holdfast console attach --port "$SOCK"
sleep 5
echo "format HOLDFAST-DATA0" | timeout 20 "$HOLDFAST" console attach --port "$SOCK" >/dev/null 2>&1 || true
say "waiting for the worker's first scheduled pull ..."
SNAP=
for i in $(seq 1 120); do
	OUT=$("$HOLDFAST" console run --port "$SOCK" --timeout 1m snapshots 2>/dev/null) || true
	SNAP=$(awk '$2 == "mail" && $4 ~ /^objects=/ { print $1 }' <<<"$OUT" | head -n 1)
	[ -n "$SNAP" ] && break
	sleep 2
done
[ -n "$SNAP" ] || fail "no snapshot on the appliance after 4 minutes (console log: $WORK/appliance-console.log)"
show holdfast console run --port "$SOCK" snapshots
printf '%s\n' "$OUT" | indent
ok "the appliance committed snapshot $SNAP"
show holdfast console run --port "$SOCK" ls "$SNAP"
LS=$("$HOLDFAST" console run --port "$SOCK" --timeout 5m ls "$SNAP") || fail "ls failed"
n=0
while IFS= read -r -d '' f; do
	key=${f#mail-src/}
	want=$(sha256sum "$f" | cut -d' ' -f1)
	grep -qF "$want $(stat -c %s "$f") \"$key\"" <<<"$LS" || fail "appliance does not read back $key as $want"
	n=$((n + 1))
done < <(find mail-src -type f -print0 | sort -z)
[ "$n" -eq 49 ] || fail "compared $n mails, want 49"
ok "all 49 mails read back on the appliance with the SHA-256 of the originals"
show holdfast console run --port "$SOCK" processes
"$HOLDFAST" console run --port "$SOCK" processes | grep -E 'worker|sealer' | indent
show holdfast console run --port "$SOCK" sockets
SOCKS=$("$HOLDFAST" console run --port "$SOCK" sockets) || fail "sockets failed"
printf '%s\n' "$SOCKS" | indent
grep -q '^0 listening socket' <<<"$SOCKS" || fail "the appliance listens on a socket"
ok "after lockdown: worker and sealer run as uid 1000 without root's powers, nothing listens"
kill -INT "$QEMU_PID" 2>/dev/null || true
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=
say "appliance powered off"
stop_minio
say "MinIO stopped"

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
