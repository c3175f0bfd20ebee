# qemu-arm64: QEMU's "virt" machine under AAVMF. Debian's arm64 kernel has
# no TPM TIS driver, so the appliance finds no TPM and stays in safe mode
# (images.TestBootQEMUArm64 boots it to that point under TCG); release
# images refuse a board that allows the TPM-less test mode.

description = "QEMU virt (arm64), AAVMF (UEFI), virtio disks, no TPM driver"
arch        = "arm64"

efi_boot_file = "BOOTAA64.EFI"
efi_stub      = "/usr/lib/systemd/boot/efi/linuxaa64.efi.stub"

# Fetching a foreign-architecture package needs
# `dpkg --add-architecture arm64 && apt-get update` on the build host
# (make setup does it). Same version as the amd64 boards' pin; when the
# mirror drops it, `apt-cache policy linux-image-arm64:arm64` gives the
# new values.
kernel {
  package = "linux-image-6.1.0-56-arm64"
  version = "6.1.192-2"
}

console {
  device = "ttyAMA0"
  baud   = 115200
}

modules = ["virtio", "virtio_ring", "virtio_mmio", "virtio_pci", "virtio_blk", "virtio_net",
  "crc16", "mbcache", "jbd2", "crc32c_generic", "ext4", "fat", "vfat", "nls_cp437", "nls_ascii"]

data_disks = ["vd*"]

tpm {
  required = false
  # TEST MODE ONLY: marks the board as one that may run without a TPM;
  # release builds refuse it. The appliance has no TPM-less mode yet: it
  # stays in safe mode and touches no data disk.
  allow_no_tpm_test_mode = true
}

qemu {
  binary        = "qemu-system-aarch64"
  machine       = "virt"
  cpu           = "max"
  memory_mib    = 1024
  firmware_code = "/usr/share/AAVMF/AAVMF_CODE.fd"
  firmware_vars = "/usr/share/AAVMF/AAVMF_VARS.fd"
  tpm_device    = ""
  disk_device   = "virtio-blk-pci"
  net_device    = "virtio-net-pci"
}
