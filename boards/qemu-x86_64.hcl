# qemu-x86_64: the QEMU q35 machine under OVMF with a TPM 2.0 (tpm-tis
# emulated by swtpm). `make qemu` and the boot test run this board.

description = "QEMU q35, OVMF (UEFI), tpm-tis from swtpm, virtio disks"
arch        = "amd64" # Debian architecture; GOARCH is the same for amd64

# The UEFI removable-media boot path the UKI is written to (slot A).
efi_boot_file = "BOOTX64.EFI"
efi_stub      = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

# Debian bookworm's kernel at a pinned version. When the mirror drops this
# version (a security update supersedes it), `make image` fails and names
# this file: run `apt-cache policy linux-image-amd64` and update the two
# values below (package name carries the ABI, version the Debian revision).
kernel {
  package = "linux-image-6.1.0-56-amd64"
  version = "6.1.192-2"
}

console {
  device = "ttyS0"
  baud   = 115200
}

# Loaded by name in this order (dependencies come from modules.dep). In
# Debian's amd64 kernel the virtio drivers are modules; the TPM TIS driver
# and AHCI are built in.
modules = ["virtio", "virtio_ring", "virtio_pci", "virtio_blk", "virtio_net", "virtio_rng",
  # ext4 for the data disks, FAT for the config partition
  "crc16", "mbcache", "jbd2", "crc32c_generic", "ext4", "fat", "vfat", "nls_cp437", "nls_ascii"]

# Block devices that may hold Holdfast data disks (sysfs names, globs).
data_disks = ["vd*"]

tpm {
  required = true
}

qemu {
  binary        = "qemu-system-x86_64"
  machine       = "q35"
  cpu           = "max"
  memory_mib    = 1024
  firmware_code = "/usr/share/OVMF/OVMF_CODE_4M.fd"
  firmware_vars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
  tpm_device    = "tpm-tis"
  disk_device   = "virtio-blk-pci"
  net_device    = "virtio-net-pci"
}
