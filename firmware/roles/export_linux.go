package roles

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/caps"
	"github.com/holdfast-appliance/holdfast/services/config"
	"github.com/holdfast-appliance/holdfast/services/export"
	"github.com/holdfast-appliance/holdfast/services/store"
)

// The opt-in read-only S3 export (an export block in the sealed config;
// services/export) runs in a process of its own, which PID 1 starts at
// the end of lockdown (firmware/appliance startExport), after the mounts are read-only and before it limits
// itself:
//
//	| stage          | uid:gid   | capabilities            | mounts                         |
//	|----------------|-----------|-------------------------|--------------------------------|
//	| become-export  | 0:0       | all (briefly)           | a new mount namespace: every   |
//	|                |           |                         | mount read-only (every data    |
//	|                |           |                         | disk, primary and mirrors, the |
//	|                |           |                         | root file system), the config  |
//	|                |           |                         | partition unmounted            |
//	| export         | 1002:1002,| none (CAP_NET_BIND_     | that namespace, which it       |
//	|                | group 1000| SERVICE only for a port | cannot change                  |
//	|                |           | below 1024)             |                                |
//
// So the export can read the store (through the worker's group: it owns
// nothing of it) but not write one byte of it on any disk: the kernel
// refuses every write on a read-only mount, whatever the process asks. It holds no socket to the sealer or to PID 1; it gets the store's
// read-only subkeys (chunk-id, data and meta: what reading needs; never
// the master key, nor the clock key a writer needs: docs/keys.md) and
// the config once, over a socket PID 1 then closes.

// Environment of the become-export stage (nothing secret: paths and the
// listen address); ExportEnv builds it.
const (
	exportStoreEnv  = "HOLDFAST_EXPORT_STORE"
	exportConfigEnv = "HOLDFAST_EXPORT_CONFIG_MOUNT"
	exportListenEnv = "HOLDFAST_EXPORT_LISTEN"
)

// ExportEnv is the environment PID 1 starts the export with: the store
// directory, the config partition's mount point (which the export's
// namespace unmounts) and the address to listen on.
func ExportEnv(storeDir, configMount, listen string) []string {
	return []string{
		exportStoreEnv + "=" + storeDir,
		exportConfigEnv + "=" + configMount,
		exportListenEnv + "=" + listen,
	}
}

// ExportInit is what PID 1 sends the export on fd 3, once, as JSON.
type ExportInit struct {
	Keys     store.StoreKeys `json:"keys"` // read-only: no clock key
	Config   []byte          `json:"config"`
	StoreDir string          `json:"store_dir"`
}

// exportNamespace runs in the become-export stage, as root in the new
// mount namespace: no mount event goes back to PID 1's namespace, every
// mount becomes read-only (caps.ReadOnlyMounts: the data disks, primary
// and mirrors alike), and the config partition goes.
// It returns the capabilities the export keeps.
func exportNamespace(storeDir, configMount, listen string) ([]int, error) {
	if storeDir == "" {
		return nil, fmt.Errorf("export: no store directory")
	}
	if err := caps.ReadOnlyMounts(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if configMount != "" {
		if err := unix.Unmount(configMount, unix.MNT_DETACH); err != nil {
			return nil, fmt.Errorf("export: hide the config partition: %w", err)
		}
	}
	if _, port, err := net.SplitHostPort(listen); err == nil {
		if p, err := strconv.Atoi(port); err == nil && p > 0 && p < 1024 {
			return []int{unix.CAP_NET_BIND_SERVICE}, nil
		}
	}
	return nil, nil
}

// runExport is the export role: read the init, open the store read-only,
// listen and serve until the process is killed.
func runExport(log hclog.Logger) error {
	conn, err := MoveFD(FDControl, "export")
	if err != nil {
		return err
	}
	var in ExportInit
	err = json.NewDecoder(conn).Decode(&in)
	conn.Close()
	if err != nil {
		return fmt.Errorf("export: read init: %w", err)
	}
	cfg, err := config.Parse("config.sealed", in.Config)
	if err != nil {
		return fmt.Errorf("export: config: %w", err)
	}
	if cfg.Export == nil {
		return fmt.Errorf("export: the config has no export block")
	}
	ctx := context.Background()
	srv, err := export.FromConfig(ctx, in.StoreDir, in.Keys, *cfg.Export, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Export.Listen)
	if err != nil {
		return fmt.Errorf("export: listen: %w", err)
	}
	log.Info("export listening", "addr", ln.Addr().String(), "uid", unix.Getuid(), "sha256_fingerprint", srv.Fingerprint())
	return srv.Serve(ctx, ln)
}
