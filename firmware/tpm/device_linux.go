package tpm

import (
	"errors"
	"fmt"
	"os"

	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/hashicorp/go-hclog"
)

// DefaultDevice is the kernel's TPM resource manager, which lets several
// users share the TPM without running out of object slots.
const DefaultDevice = "/dev/tpmrm0"

// OpenDevice opens a TPM character device (normally DefaultDevice). A
// missing device wraps ErrNoTPM.
func OpenDevice(path string, log hclog.Logger) (*TPM, error) {
	tr, err := linuxtpm.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoTPM, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %v", ErrNoTPM, path, err)
	}
	return New(tr, log), nil
}
