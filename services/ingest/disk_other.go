//go:build !linux

package ingest

import (
	"errors"
	"fmt"
)

// diskUsage is only implemented on Linux, where the appliance runs.
func diskUsage(path string) (used, total uint64, err error) {
	return 0, 0, fmt.Errorf("disk usage of %s: %w", path, errors.ErrUnsupported)
}
