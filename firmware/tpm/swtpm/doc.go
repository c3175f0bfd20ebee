// Package swtpm starts and stops a software TPM 2.0 (Debian's swtpm) for
// tests and for `make qemu`: one swtpm process per Sim, listening on unix
// sockets in a private temporary directory (no network), keeping its state in
// a directory the caller names so that a "reboot" (Stop, then Start on the
// same state) or a fresh TPM (a new directory) can be simulated.
//
// Limits: Linux only; swtpm must be installed (`make setup` installs the
// swtpm and swtpm-tools packages). The TPM2_Shutdown that makes a stop
// orderly is the caller's job (tpm.TPM.Shutdown); Stop only asks swtpm to
// exit through its control channel (CMD_SHUTDOWN), and Kill simulates a power
// cut (SIGKILL).
package swtpm
