//go:build !linux

package port

import (
	"context"
	"errors"
	"io"
)

// DefaultBaud is the speed used when none is given.
const DefaultBaud = 115200

// Open is only implemented on Linux.
func Open(ctx context.Context, dev string, baud int) (io.ReadWriteCloser, error) {
	return nil, errors.New("console port: only supported on Linux")
}
