package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
	"github.com/holdfast-appliance/holdfast/firmware/console/port"
)

type consoleFlags struct {
	port string
	baud int
}

func (a *app) consoleCmd() *cobra.Command {
	cf := &consoleFlags{}
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Talk to an appliance over its serial console",
		Long: `The console subcommands talk to a Holdfast appliance over its serial line:
a serial device (e.g. /dev/ttyUSB0, put into raw mode at --baud) or the unix
socket of a VM started with "make qemu" (out/BOARD/vm/serial.sock).

The appliance and this tool exchange checksummed frames on the same line as
the kernel's and the appliance's own messages (docs/boot.md).`,
		Example: `  holdfast console push --port /dev/ttyUSB0 cfg.hcl
  holdfast console attach --port out/qemu-x86_64/vm/serial.sock`,
		Args: subcommandArgs,
		RunE: missingSubcommand,
	}
	cmd.PersistentFlags().StringVar(&cf.port, "port", "", "serial device or QEMU serial socket")
	cmd.PersistentFlags().IntVar(&cf.baud, "baud", port.DefaultBaud, "serial speed (ignored for sockets)")
	_ = cmd.MarkPersistentFlagRequired("port")
	cmd.AddCommand(a.consolePushCmd(cf), a.consoleAttachCmd(cf))
	cmd.AddCommand(a.consoleRunCmds(cf)...)
	return cmd
}

func (a *app) consolePushCmd(cf *consoleFlags) *cobra.Command {
	var yes, show bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "push CONFIG.hcl",
		Short: "Send a config to an appliance that waits for one",
		Long: `push waits until the appliance announces that it waits for a config, sends
the file, shows the appliance's summary and asks you to confirm (type yes),
and reports whether the appliance accepted it. --yes answers for you.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("config: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var text io.Writer = io.Discard
			if show {
				text = a.stderr
			}
			c, closePort, err := a.openConsole(ctx, cf, text)
			if err != nil {
				return err
			}
			defer closePort()
			fmt.Fprintf(a.stdout, "waiting for the appliance on %s ...\n", cf.port)
			in := bufio.NewReader(cmd.InOrStdin())
			r, err := console.Push(ctx, c, cfg, console.HostOptions{
				OnHello: func(h console.Hello) {
					a.log.Debug("hello", "board", h.Board, "version", h.Version, "state", h.State)
				},
				Confirm: func(summary, prompt string) (string, error) {
					fmt.Fprintf(a.stdout, "appliance summary:\n%s%s: ", summary, prompt)
					if yes {
						fmt.Fprintln(a.stdout, "yes (--yes)")
						return "yes", nil
					}
					line, err := in.ReadString('\n')
					if err != nil && line == "" {
						return "", fmt.Errorf("reading the answer: %w", err)
					}
					return strings.TrimSpace(line), nil
				},
			})
			if err != nil {
				return err
			}
			if err := c.Drain(ctx); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, r.Message)
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm without asking")
	cmd.Flags().BoolVar(&show, "show-console", false, "copy the appliance's console text to stderr")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}

func (a *app) consoleAttachCmd(cf *consoleFlags) *cobra.Command {
	var linger time.Duration
	cmd := &cobra.Command{
		Use:   "attach",
		Short: "Show the appliance's console and send what you type",
		Long: `attach copies the console's text to stdout (protocol frames are shown as
short markers) and sends each line you type to the appliance, e.g. "yes" to
confirm a config. It ends at end of input (after --linger, so that a slow
serial line or a QEMU UART that drops what it has not read when the
connection closes still delivers the last line), Ctrl-C, or when the port
closes.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			c, closePort, err := a.openConsole(ctx, cf, &crStripper{w: a.stdout})
			if err != nil {
				return err
			}
			defer closePort()
			go func() {
				for {
					f, err := c.Recv(ctx)
					if err != nil {
						return
					}
					fmt.Fprintf(a.stdout, "\n<frame %s seq %d: %s>\n", f.Type, f.Seq, printable(f.Payload))
				}
			}()
			lines := bufio.NewScanner(cmd.InOrStdin())
			for lines.Scan() {
				if _, err := c.WriteText([]byte(lines.Text() + "\r\n")); err != nil {
					return err
				}
			}
			if err := lines.Err(); err != nil {
				return fmt.Errorf("reading input: %w", err)
			}
			select {
			case <-time.After(linger):
			case <-ctx.Done():
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&linger, "linger", 3*time.Second, "how long to stay connected after end of input")
	return cmd
}

// openConsole opens the port and starts a frame link on it; text between
// frames goes to text. The returned func closes the port and waits for the
// link to stop.
func (a *app) openConsole(ctx context.Context, cf *consoleFlags, text io.Writer) (*frame.Conn, func(), error) {
	p, err := port.Open(ctx, cf.port, cf.baud)
	if err != nil {
		return nil, nil, err
	}
	c := frame.NewConn(p, frame.Options{Text: text, Log: a.log.Named("console")})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop := context.AfterFunc(ctx, func() { p.Close() })
	return c, func() {
		stop()
		p.Close()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			a.log.Debug("console link stopped", "error", err)
		}
	}, nil
}

func printable(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || (r >= 0x20 && r != 0x7f) {
			return r
		}
		return '.'
	}, string(b))
	return strings.TrimRight(s, "\n")
}
