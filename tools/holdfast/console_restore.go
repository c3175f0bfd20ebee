package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/firmware/console"
)

// consoleRestoreCmd is `holdfast console restore`: the appliance's restore
// command (firmware/appliance/restore_linux.go) sent over the serial line,
// its output printed as it arrives.
func (a *app) consoleRestoreCmd(cf *consoleFlags) *cobra.Command {
	var (
		object  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT TARGET [PREFIX | --object KEY]",
		Short: "Have the appliance restore a snapshot to an S3 target of its config",
		Long: `restore has the appliance write one snapshot back out to TARGET, a target
block of its sealed config (docs/config.md): every object, the objects whose
key starts with PREFIX, or (--object) the one object KEY. Each object goes
to the target bucket as the target's prefix + its key, with its content
type and user metadata.

The appliance checks the snapshot's TPM-signed receipt against its manifest
first and refuses the restore if it does not verify; every chunk is checked
as it is read. The appliance's worker does the network part; the restore
is never started from the network. Progress lines and a summary are
printed as the appliance sends them.

A PREFIX or KEY that starts with a double quote is read as a Go-quoted
string, the form "holdfast console run ls" prints keys in (so "a\nb" or
"\xff" can be given); anything else is taken as it is. Exit status 1 when
the appliance reports that the restore failed. Leaving early (Ctrl-C,
--timeout) does not stop the restore on the appliance.`,
		Example: `  holdfast console restore --port /dev/ttyUSB0 20261122T074938Z-2256721f offsite
  holdfast console restore --port /dev/ttyUSB0 20261122T074938Z-2256721f offsite mail/2024/
  holdfast console restore --port /dev/ttyUSB0 20261122T074938Z-2256721f offsite --object 'inbox/a b.eml'`,
		Args: usageArgs(cobra.RangeArgs(2, 3)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := consoleRestoreCommand(args, object, cmd.Flags().Changed("object"))
			if err != nil {
				return err
			}
			return a.consoleRun(cmd.Context(), cf, timeout, c)
		},
	}
	cmd.Flags().StringVar(&object, "object", "", "restore only the object with this key")
	cmd.Flags().DurationVar(&timeout, "timeout", 24*time.Hour, "give up waiting after this long (the restore goes on)")
	return cmd
}

// consoleRestoreCommand builds the appliance's restore command. The key
// or prefix is always sent Go-quoted, so it arrives byte for byte (a
// COMMAND frame is JSON, which would mangle bytes that are not UTF-8).
func consoleRestoreCommand(args []string, object string, hasObject bool) (console.Command, error) {
	c := console.Command{Name: "restore", Args: []string{args[0], args[1]}}
	var key string
	switch {
	case hasObject && len(args) == 3:
		return c, usageErrorf("give a PREFIX or --object KEY, not both")
	case hasObject:
		k, err := keyArgument(object)
		if err != nil {
			return c, usageErrorf("--object: %w", err)
		}
		if k == "" {
			return c, usageErrorf("--object needs a non-empty KEY")
		}
		c.Args = append(c.Args, "--object")
		key = k
	case len(args) == 3:
		k, err := keyArgument(args[2])
		if err != nil {
			return c, usageErrorf("PREFIX: %w", err)
		}
		if k == "" {
			return c, nil
		}
		key = k
	default:
		return c, nil
	}
	c.Args = append(c.Args, strconv.Quote(key))
	return c, nil
}

// keyArgument reads a PREFIX or KEY as the appliance does: Go-quoted when
// it starts with a double quote, else literal.
func keyArgument(s string) (string, error) {
	if !strings.HasPrefix(s, `"`) {
		return s, nil
	}
	k, err := strconv.Unquote(s)
	if err != nil {
		return "", usageErrorf("%s is not a Go-quoted string: %w", strconv.Quote(s), err)
	}
	return k, nil
}
