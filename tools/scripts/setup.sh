#!/usr/bin/env bash
# setup.sh: install what building, testing, the demo and the benchmarks need
# on a fresh Debian bookworm machine or CI. Idempotent: it installs only what
# is missing, runs `apt-get update` at most once, and says what it does.
#
# To add a Debian package: one line in DEBS below.
# To add a pinned Go-built tool (e.g. minio): one line in GO_TOOLS below; it
# is built once with `go install` into ${XDG_CACHE_HOME:-$HOME/.cache}/holdfast.
set -euo pipefail

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/holdfast"

# Debian packages: "package  what needs it".
DEBS=(
	"e2fsprogs    chattr/lsattr and mkfs.ext4: inode flags on the store; debugfs to damage a pack in a disk image"
	"xfsprogs     mkfs.xfs: store tests on xfs"
	"btrfs-progs  mkfs.btrfs: store tests on btrfs"
	"attr         getfattr/setfattr: retention xattrs in the demo"
	"libcap2-bin  capsh: dropping CAP_LINUX_IMMUTABLE in the demo"
	"util-linux   setpriv, losetup, mount"
	"rclone       the demo's S3 bucket, and the rclone baseline in the benchmarks"
	"time         GNU time (/usr/bin/time): peak memory in benchmarks"
	"jq           JSON in scripts"
	"swtpm        software TPM 2.0: firmware/tpm tests and make qemu"
	"swtpm-tools  swtpm_setup/swtpm_ioctl for swtpm state (make qemu)"
	"tpm2-tools   tpm2_* commands for debugging TPM state by hand (tests do not use them)"
	"qemu-system-x86  make qemu and the boot test: runs the qemu-x86_64 image"
	"qemu-utils   qemu-img and qemu-io: the VM's data disks, damaging one"
	"iproute2     ip netns: the attack-suite test scans the VM from a network namespace of its own"
	"ovmf         UEFI firmware for x86-64 VMs (OVMF_CODE_4M.fd, OVMF_VARS_4M.fd)"
	"systemd-boot-efi  systemd-stub (linuxx64.efi.stub) the UKIs are built from"
	"binutils     objcopy: adds the UKI sections to the stub"
	"kmod         depmod: modules.dep for the initramfs"
	"systemd      systemd-measure: cross-check of the predicted PCR 11 (images tests)"
	"qemu-system-arm  qemu-system-aarch64: the qemu-arm64 boot test"
	"qemu-efi-aarch64  AAVMF, UEFI firmware for arm64 VMs (AAVMF_CODE.fd, AAVMF_VARS.fd, 64 MiB each)"
	# Multi-Arch: same, so it sits beside the amd64 package at the same
	# version and puts linuxaa64.efi.stub where boards/qemu-arm64.hcl looks
	# (the amd64 package has only the x64 stub). Needs FOREIGN_ARCHS.
	"systemd-boot-efi:arm64  systemd-stub for arm64 (linuxaa64.efi.stub): the qemu-arm64 UKI"
	"binutils-aarch64-linux-gnu  aarch64-linux-gnu-objcopy: the host's objcopy cannot write arm64 PE (the qemu-arm64 UKI)"
)

# Foreign dpkg architectures: arm64 for systemd-boot-efi:arm64 above and for
# `apt-get download` of the qemu-arm64 board's kernel (boards/kernel.go).
FOREIGN_ARCHS=(arm64)

# Pinned tools built from source with Go: "name  module/path@version".
# Each lands in $CACHE_DIR/bin/<name>; a stamp records the version built.
GO_TOOLS=(
	# MinIO for the S3 source tests and bench-pull (services/ingest). MinIO
	# tags are not semver, so the pin is the proxy's pseudo-version of a
	# master commit (2026-02-12) that builds with our Go; ~7 min on 2 cores.
	"minio  github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"
)

log() { printf 'setup: %s\n' "$*"; }
die() {
	printf 'setup: error: %s\n' "$*" >&2
	exit 1
}

# as_root runs a command as root: directly when we are root, else with sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run '$*' and sudo is not installed"
	fi
}

# apt_update runs `apt-get update` once per run of this script.
APT_UPDATED=0
apt_update() {
	[ "$APT_UPDATED" -eq 0 ] || return 0
	log "running apt-get update"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update
	APT_UPDATED=1
}

# add_foreign_archs enables FOREIGN_ARCHS in dpkg; package lists for a newly
# added one come from the next apt-get update.
NEED_UPDATE=0
add_foreign_archs() {
	local arch have
	have=" $(dpkg --print-architecture) $(dpkg --print-foreign-architectures | tr '\n' ' ') "
	for arch in "${FOREIGN_ARCHS[@]}"; do
		[[ "$have" == *" $arch "* ]] && continue
		log "dpkg --add-architecture $arch"
		as_root dpkg --add-architecture "$arch"
		NEED_UPDATE=1
	done
}

deb_installed() {
	# Capture first: `dpkg -s | grep -q` under pipefail fails when grep quits
	# early and dpkg dies of SIGPIPE on a long description.
	# A bare name is ambiguous to dpkg once another architecture's
	# instance is installed too (systemd-boot-efi:arm64): then ask for
	# the native one.
	local status
	status=$(dpkg -s "$1" 2>/dev/null) ||
		status=$(dpkg -s "$1:$(dpkg --print-architecture)" 2>/dev/null) || return 1
	grep -q '^Status: install ok installed$' <<<"$status"
}

install_debs() {
	local missing=() entry pkg
	for entry in "${DEBS[@]}"; do
		pkg=${entry%% *}
		if deb_installed "$pkg"; then
			continue
		fi
		missing+=("$pkg")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		log "Debian packages: all ${#DEBS[@]} present"
		# A foreign architecture added just now needs its package lists
		# (apt-get download of the arm64 kernel).
		[ "$NEED_UPDATE" -eq 0 ] || apt_update
		return
	fi
	log "Debian packages missing: ${missing[*]}"
	# Wait for another apt/dpkg run to finish instead of failing at once.
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
	apt_update
	log "running apt-get install -y --no-install-recommends ${missing[*]}"
	as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
	for pkg in "${missing[@]}"; do
		deb_installed "$pkg" || die "package $pkg is still not installed"
	done
}

check_go() {
	local go=${GO:-go}
	command -v "$go" >/dev/null 2>&1 || die "Go is not on PATH; install the Go version go.mod names (Debian's golang is too old)"
	log "Go: $("$go" version)"
}

install_go_tools() {
	local entry name mod stamp go=${GO:-go}
	[ ${#GO_TOOLS[@]} -gt 0 ] || return 0
	mkdir -p "$CACHE_DIR/bin"
	for entry in "${GO_TOOLS[@]}"; do
		read -r name mod <<<"$entry"
		stamp="$CACHE_DIR/bin/.$name.version"
		if [ -x "$CACHE_DIR/bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod" ]; then
			log "$name: cached ($mod)"
			continue
		fi
		log "$name: building $mod into $CACHE_DIR/bin"
		GOBIN="$CACHE_DIR/bin" CGO_ENABLED=0 "$go" install "$mod"
		[ -x "$CACHE_DIR/bin/$name" ] || die "go install $mod did not produce $CACHE_DIR/bin/$name"
		printf '%s\n' "$mod" >"$stamp"
	done
}

main() {
	[ -r /etc/debian_version ] || die "this script sets up Debian (bookworm); /etc/debian_version is missing"
	add_foreign_archs
	install_debs
	check_go
	install_go_tools
	log "done (tool cache: $CACHE_DIR)"
}

main "$@"
