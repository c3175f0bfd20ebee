// Command holdfast is the host-side tool for Holdfast stores: it creates a
// store, puts local files into it as snapshots, lists, reads, verifies and
// prunes them. It uses the same store package as the appliance.
//
// Exit codes: 0 success, 1 the operation failed (or verify found damage),
// 2 the command line was wrong (unknown command or flag, wrong number of
// arguments, bad value, missing required flag).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the process exit code.
// Errors are printed to stderr as "holdfast: <error>".
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	a := &app{stdout: stdout, stderr: stderr, log: hclog.NewNullLogger()}
	root := a.rootCmd()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "holdfast: %v\n", err)
		if isUsage(err) && cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return exitCode(err)
}

// app holds what every command shares.
type app struct {
	stdout, stderr io.Writer
	logLevel       string
	log            hclog.Logger
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "holdfast",
		Short: "Host tool for Holdfast write-once backup stores",
		Long: `holdfast works with Holdfast stores from a host: an append-only, encrypted,
deduplicated snapshot store whose sealed files the kernel itself refuses to
delete or change (FS_IMMUTABLE_FL / FS_APPEND_FL on ext4, xfs or btrfs).

Writing to a store (init, put, prune) needs root, or at least
CAP_LINUX_IMMUTABLE, because sealing sets inode flags.

Exit codes: 0 success; 1 the operation failed or verify found damage;
2 usage error (unknown command or flag, wrong arguments, bad value).`,
		Example: `  holdfast store init /srv/holdfast --key-file /root/holdfast.key
  holdfast store put /srv/holdfast --key-file /root/holdfast.key --source mail --retain 30d /var/mail
  holdfast store ls /srv/holdfast --key-file /root/holdfast.key`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		Args:              subcommandArgs,
		RunE:              missingSubcommand,
		PersistentPreRunE: a.setup,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError{err}
	})
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "warn",
		"log level for messages on stderr: trace, debug, info, warn, error or off")
	root.AddCommand(a.storeCmd())
	root.AddCommand(a.pullCmd())
	root.AddCommand(a.receiptCmd())
	root.AddCommand(a.consoleCmd())
	root.AddCommand(a.restoreCmd())
	root.AddCommand(a.flashCmd())
	root.AddCommand(a.alertCmd())
	root.AddCommand(a.exportCmd())
	return root
}

// setup runs before every command, after its arguments were validated: it
// checks required flags (so a missing one is a usage error, as cobra's own
// check after this would not be) and builds the logger. A grouping command
// called without a subcommand fails here, before its required flags would
// be asked for.
func (a *app) setup(cmd *cobra.Command, args []string) error {
	if cmd.HasSubCommands() {
		return missingSubcommand(cmd, args)
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return usageError{err}
	}
	level := hclog.LevelFromString(a.logLevel)
	if level == hclog.NoLevel {
		return usageErrorf("--log-level %q: want trace, debug, info, warn, error or off", a.logLevel)
	}
	a.log = hclog.New(&hclog.LoggerOptions{
		Name:   "holdfast",
		Level:  level,
		Output: a.stderr,
		Color:  hclog.ColorOff,
	})
	return nil
}
