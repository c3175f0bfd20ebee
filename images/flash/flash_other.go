//go:build !linux

package flash

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
)

func checkBlockDevice(path string, _ os.FileInfo, _ int64, _ hclog.Logger) (int64, error) {
	return 0, fmt.Errorf("%s: %w", path, ErrUnsupported)
}

func openBlockDevice(path string) (*os.File, error) {
	return nil, fmt.Errorf("%s: %w", path, ErrUnsupported)
}

func dropCache(*os.File, int64, hclog.Logger) {}
