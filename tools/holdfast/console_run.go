package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/firmware/console"
)

// consoleRunCmds are the console subcommands that run one appliance
// command: "status", the general "run", and "restore"
// (console_restore.go). Output is printed as each OUTPUT frame arrives.
func (a *app) consoleRunCmds(cf *consoleFlags) []*cobra.Command {
	var timeout time.Duration
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the appliance's status: phase, disks, store, pulls, alerts",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.consoleRun(cmd.Context(), cf, timeout, console.Command{Name: "status"})
		},
	}
	status.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
	var runTimeout time.Duration
	run := &cobra.Command{
		Use:   "run COMMAND [ARG...]",
		Short: "Run a console command on the appliance (help lists them)",
		Long: `run sends one command to the appliance over the serial line and prints its
output: help, status, snapshots, ls SNAPSHOT [PREFIX], verify, pull [SOURCE],
format SERIAL, extend SNAPSHOT PERIOD, hold SNAPSHOT, restore (see
"holdfast console restore"), and in safe mode unlock RECOVERY-KEY then unlock yes. The same
commands can be typed at the console itself. Exit status 1 when the
appliance reports that the command failed.`,
		Example: `  holdfast console run --port out/qemu-x86_64/vm/serial.sock snapshots
  holdfast console run --port /dev/ttyUSB0 extend 20261122T074938Z-2256721f 1y`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.consoleRun(cmd.Context(), cf, runTimeout, console.Command{Name: args[0], Args: args[1:]})
		},
	}
	run.Flags().DurationVar(&runTimeout, "timeout", 30*time.Minute, "give up after this long (verify and pull can take a while)")
	return []*cobra.Command{status, run, a.consoleRestoreCmd(cf)}
}

func (a *app) consoleRun(ctx context.Context, cf *consoleFlags, timeout time.Duration, c console.Command) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, closePort, err := a.openConsole(ctx, cf, io.Discard)
	if err != nil {
		return err
	}
	defer closePort()
	out := &crStripper{w: a.stdout}
	_, err = console.RunCommand(ctx, conn, c, out)
	if derr := conn.Drain(ctx); err == nil && derr != nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("console %s: %w", c.Name, err)
	}
	return nil
}

// crStripper turns the console's CR LF into LF for a host terminal or
// file, and quotes the rest (console.Quote): what the appliance prints may
// carry bytes a hostile source or a compromised role chose, and none of
// them may act on the operator's terminal.
type crStripper struct{ w io.Writer }

func (c *crStripper) Write(p []byte) (int, error) {
	if _, err := c.w.Write(console.Quote(bytes.ReplaceAll(p, []byte("\r\n"), []byte("\n")))); err != nil {
		return 0, err
	}
	return len(p), nil
}
