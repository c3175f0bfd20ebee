# pc-x86_64: a generic UEFI PC with a TPM 2.0, booting from a USB stick,
# with SATA (AHCI), NVMe or USB data disks.

description = "generic UEFI x86-64 PC with TPM 2.0: AHCI, NVMe, USB storage"
arch        = "amd64"

efi_boot_file = "BOOTX64.EFI"
efi_stub      = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

# Same pin as qemu-x86_64; update both together (see that file).
kernel {
  package = "linux-image-6.1.0-56-amd64"
  version = "6.1.192-2"
}

console {
  device = "ttyS0"
  baud   = 115200
}

# AHCI (libahci, ahci), NVMe (nvme, nvme_core), USB (xhci_pci, ehci_pci,
# usb_storage, uas) and the SCSI disk driver they all need (sd_mod).
# Modules that Debian builds into the kernel are skipped at build time.
modules = [
  "libahci", "ahci", "nvme_core", "nvme",
  "xhci_pci", "xhci_hcd", "ehci_pci", "ehci_hcd", "usb_storage", "uas", "sd_mod",
  "e1000e", "igb", "r8169",
  "crc16", "mbcache", "jbd2", "crc32c_generic", "ext4", "fat", "vfat", "nls_cp437", "nls_ascii",
]

data_disks = ["sd*", "nvme*n*"]

tpm {
  required = true
}
