package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/holdfast-appliance/holdfast/boards"
)

// Wrapper scripts put in front of the real QEMU binary, for the tests of
// the KVM probe and of the fallback to TCG on every host (the board's
// Binary field points at them): each behaves like QEMU on a host whose
// KVM fails in one way when given "-accel kvm", and runs the real QEMU
// otherwise. They exec QEMU, so killing the wrapper's pid kills QEMU.
const (
	// WrapperExits prints the error a host's KVM gives when it refuses
	// an MSR and exits at once, as QEMU's assertion does.
	WrapperExits = `#!/bin/sh
for a; do
	if [ "$a" = kvm ]; then
		echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69 (test wrapper)" >&2
		exit 134
	fi
done
exec "$REAL_QEMU" "$@"
`
	// WrapperSilent runs QEMU under TCG with its CPUs stopped (-S): QEMU
	// is alive and its sockets exist, but the guest never prints a byte,
	// like a guest hanging in the kernel's decompressor under KVM.
	WrapperSilent = `#!/bin/sh
kvm=0
for a; do
	shift
	if [ "$a" = kvm ]; then kvm=1; a=tcg; fi
	set -- "$@" "$a"
done
if [ $kvm = 1 ]; then exec "$REAL_QEMU" "$@" -S; fi
exec "$REAL_QEMU" "$@"
`
	// WrapperTCG runs QEMU under TCG when asked for KVM: a KVM that works
	// (slowly), so that the probe's success path runs on every host.
	WrapperTCG = `#!/bin/sh
for a; do
	shift
	if [ "$a" = kvm ]; then a=tcg; fi
	set -- "$@" "$a"
done
exec "$REAL_QEMU" "$@"
`
)

// WriteWrapper writes script into dir as an executable with REAL_QEMU set
// to the board's real QEMU binary, and returns its path: set it as the
// board's QEMU binary to run a VM or a probe through it.
func WriteWrapper(dir string, b *boards.Board, script string) (string, error) {
	real, err := exec.LookPath(b.QEMU.Binary)
	if err != nil {
		return "", fmt.Errorf("qemu wrapper: %w (run make setup)", err)
	}
	p := filepath.Join(dir, "qemu-wrapper")
	script = strings.Replace(script, "#!/bin/sh\n", "#!/bin/sh\nREAL_QEMU="+real+"\n", 1)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("qemu wrapper: %w", err)
	}
	return p, nil
}
