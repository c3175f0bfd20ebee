package appliance

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/holdfast-appliance/holdfast/firmware/roles"
)

// startExport starts the opt-in read-only S3 export (firmware/roles
// export_linux.go: its stages, namespace and what it holds) when the
// config has an export block: PID 1 hands it the store's read-only
// subkeys and the config once, over a socket it then closes.
func (a *appliance) startExport() error {
	a.mu.Lock()
	cfg, dir := a.cfg, a.storeDir
	a.mu.Unlock()
	if cfg == nil || cfg.Export == nil {
		return nil
	}
	init, err := a.exportInit()
	if err != nil {
		return fmt.Errorf("export keys: %w", err)
	}
	ours, theirs, err := roles.Socketpair("export")
	if err != nil {
		return err
	}
	defer ours.Close()
	env := roles.ExportEnv(dir, filepath.Join(a.o.RunDir, "config"), cfg.Export.Listen)
	_, err = a.spawnWith("export", unix.CLONE_NEWNS, env, theirs)
	theirs.Close()
	if err != nil {
		return err
	}
	if err := json.NewEncoder(ours).Encode(init); err != nil {
		return fmt.Errorf("export: send init: %w", err)
	}
	a.log.Info("export started: read-only S3 over TLS", "listen", cfg.Export.Listen)
	return nil
}
