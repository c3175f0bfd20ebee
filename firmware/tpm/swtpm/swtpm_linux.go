package swtpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ErrNotInstalled means the swtpm binary is not on PATH.
var ErrNotInstalled = errors.New("swtpm is not installed: run make setup (Debian packages swtpm swtpm-tools)")

// swtpm control channel commands (swtpm's tpm_ioctl.h): a 4-byte big-endian
// command code, answered by a 4-byte big-endian result (0 = success).
const (
	cmdShutdown = 3
)

// Options configure a Sim.
type Options struct {
	// StateDir holds the TPM's persistent state; it is created if missing.
	StateDir string
	// Logger receives swtpm's output; nil discards it.
	Logger hclog.Logger
}

// Sim is one running swtpm process.
type Sim struct {
	opts    Options
	sockDir string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// Start launches swtpm on o.StateDir and waits until its server socket
// accepts connections. The TPM is powered on and has received
// TPM2_Startup(CLEAR) (a TPM Restart when the last shutdown was
// TPM2_Shutdown(STATE), else a TPM Reset).
func Start(ctx context.Context, o Options) (*Sim, error) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, ErrNotInstalled
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if strings.Contains(o.StateDir, ",") {
		return nil, fmt.Errorf("swtpm state dir %q: swtpm cannot take a path with a comma", o.StateDir)
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("swtpm state dir: %w", err)
	}
	// Unix socket paths are limited to 108 bytes: keep them short.
	sockDir, err := os.MkdirTemp("", "swtpm-")
	if err != nil {
		return nil, fmt.Errorf("swtpm socket dir: %w", err)
	}
	s := &Sim{opts: o, sockDir: sockDir, done: make(chan struct{})}
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--server", "type=unixio,path="+s.SocketPath(),
		"--ctrl", "type=unixio,path="+s.ctrlPath(),
		"--tpmstate", "dir="+o.StateDir,
		"--flags", "not-need-init,startup-clear",
	)
	cmd.Stdout = logWriter{o.Logger}
	cmd.Stderr = logWriter{o.Logger}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.Kill()
		return nil, err
	}
	o.Logger.Debug("swtpm started", "pid", cmd.Process.Pid, "state", o.StateDir)
	return s, nil
}

// SocketPath is the unix socket carrying TPM commands (tpm.Dial("unix", ...)).
func (s *Sim) SocketPath() string { return filepath.Join(s.sockDir, "tpm") }

func (s *Sim) ctrlPath() string { return filepath.Join(s.sockDir, "ctrl") }

// StateDir is the directory holding the TPM's persistent state.
func (s *Sim) StateDir() string { return s.opts.StateDir }

func (s *Sim) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", s.ctrlPath())
		if err == nil {
			c.Close()
			// The data socket file appears at bind, before swtpm listens:
			// only a connection proves it ready (a dial in between was
			// refused under load).
			if dc, err := d.DialContext(ctx, "unix", s.SocketPath()); err == nil {
				dc.Close()
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("swtpm exited at start: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("swtpm did not come up: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop asks swtpm to exit (CMD_SHUTDOWN on the control channel) and waits.
// Send TPM2_Shutdown(STATE) first for an orderly power-off.
func (s *Sim) Stop(ctx context.Context) error {
	defer os.RemoveAll(s.sockDir)
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.ctrlPath())
	if err != nil {
		return fmt.Errorf("swtpm control channel: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, cmdShutdown)); err != nil {
		return fmt.Errorf("swtpm CMD_SHUTDOWN: %w", err)
	}
	res := make([]byte, 4)
	if _, err := io.ReadFull(c, res); err != nil {
		return fmt.Errorf("swtpm CMD_SHUTDOWN response: %w", err)
	}
	if rc := binary.BigEndian.Uint32(res); rc != 0 {
		return fmt.Errorf("swtpm CMD_SHUTDOWN failed: result 0x%x", rc)
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.Kill()
		return fmt.Errorf("swtpm did not exit after CMD_SHUTDOWN: %w", ctx.Err())
	}
}

// Kill ends swtpm with SIGKILL, as a power cut would, and waits for it.
// It is safe to call on a stopped Sim.
func (s *Sim) Kill() error {
	defer os.RemoveAll(s.sockDir)
	select {
	case <-s.done:
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill swtpm: %w", err)
	}
	<-s.done
	return nil
}

type logWriter struct{ log hclog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.log.Debug("swtpm", "out", l)
	}
	return len(p), nil
}
