package main

import (
	"bufio"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/services/store"
)

func (a *app) storeLsCmd(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ls DIR --key-file FILE [SNAPSHOT]",
		Short: "List snapshots, or the objects of one snapshot",
		Long: `Without SNAPSHOT, ls lists the committed snapshots, oldest first: ID, source,
start time (UTC), number of objects, bytes, effective retain-until ("forever"
when none was set), legal hold, and whether the snapshot is a complete copy
of its source. Snapshots still in progress are listed after the table.

With SNAPSHOT, ls lists its objects: size in bytes, modification time, the
SHA-256 recorded when it was read ("-" when none), and the key. A key that is
not printable UTF-8, or that starts with a double quote, is shown Go-quoted
(e.g. "dir/bad\xffname"); "store cat" accepts that quoted form.

ls opens the store read-only and changes nothing.`,
		Example: `  holdfast store ls /srv/hf --key-file hf.key
  holdfast store ls /srv/hf --key-file hf.key 20250101T020000Z-1a2b3c4d`,
		Args: usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.open(cmd.Context(), args[0], sf, true)
			if err != nil {
				return err
			}
			defer s.Close()
			if len(args) == 2 {
				return a.lsObjects(s, args[1])
			}
			return a.lsSnapshots(s)
		},
	}
}

func (a *app) lsSnapshots(s *store.Store) error {
	snaps, err := s.Snapshots()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSOURCE\tSTARTED\tOBJECTS\tBYTES\tRETAIN-UNTIL\tHOLD\tCOMPLETE")
	disagree := false
	for _, sn := range snaps {
		until := "forever"
		if !sn.Retention.RetainUntil.IsZero() {
			until = formatTime(sn.Retention.RetainUntil)
		}
		if sn.Retention.Disagree {
			until += " (!)"
			disagree = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", sn.ID, displayText(sn.Source), formatTime(sn.Started),
			sn.Count, sn.Bytes, until, yesNo(sn.Retention.LegalHold), yesNo(sn.Complete))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if disagree {
		fmt.Fprintln(a.stdout, "(!) the retention xattrs disagree with the manifest; the stronger value is shown. Run verify.")
	}
	in, err := s.Interrupted()
	if err != nil {
		return err
	}
	for _, i := range in {
		fmt.Fprintf(a.stdout, "in progress: %s source %s started %s, %d objects so far (the next put of that source resumes it)\n",
			i.ID, displayText(i.Source), formatTime(i.Started), i.Objects)
	}
	return nil
}

func (a *app) lsObjects(s *store.Store, id string) error {
	m, err := s.SnapshotHead(id)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "snapshot %s  source %s  started %s  finished %s  complete %s\n",
		m.ID, displayText(m.Source), formatTime(m.Started), formatTime(m.Finished), yesNo(m.Complete))
	for _, e := range m.Errors {
		fmt.Fprintf(a.stdout, "error recorded: %s\n", displayText(e))
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SIZE\tMODIFIED\tSHA256\tKEY")
	// The objects stream from the manifest a frame at a time: memory does
	// not grow with the snapshot. tabwriter keeps its lines until Flush,
	// so it is flushed every 1,000 rows (columns align within a block).
	n := 0
	if _, err := s.WalkObjects(id, func(o store.Object) error {
		sum := o.Checksums["sha256"]
		if sum == "" {
			sum = "-"
		}
		// Keys go last and may hold spaces; tabwriter only aligns on tabs,
		// and displayKey never lets a raw tab through.
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", o.Size, formatTime(o.ModTime), sum, displayKey(o.Key))
		if n++; n%1000 == 0 {
			return tw.Flush()
		}
		return nil
	}); err != nil {
		_ = tw.Flush()
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d objects, %d bytes (%s)\n", n, m.Bytes, humanBytes(m.Bytes))
	return nil
}

func (a *app) storeCatCmd(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "cat DIR --key-file FILE SNAPSHOT OBJECT",
		Short: "Write one object's content to stdout",
		Long: `cat writes the content of object OBJECT of snapshot SNAPSHOT to stdout. Every
chunk is decrypted and checked against its keyed hash on the way; a damaged
chunk stops cat with an error (exit 1) after what came before it was written.

OBJECT is the key exactly as stored. A key that "ls" shows Go-quoted may be
given in that quoted form too.

cat opens the store read-only.`,
		Example: `  holdfast store cat /srv/hf --key-file hf.key 20250101T020000Z-1a2b3c4d mail/inbox.mbox > inbox.mbox
  holdfast store cat /srv/hf --key-file hf.key 20250101T020000Z-1a2b3c4d '"docs/bad\xffname"'`,
		Args: usageArgs(cobra.ExactArgs(3)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.open(cmd.Context(), args[0], sf, true)
			if err != nil {
				return err
			}
			defer s.Close()
			obj, err := findObject(s, args[1], args[2])
			if err != nil {
				return err
			}
			w := bufio.NewWriterSize(a.stdout, 1<<20)
			if err := s.WriteObject(cmd.Context(), obj, w); err != nil {
				_ = w.Flush()
				return err
			}
			return w.Flush()
		},
	}
}

// findObject looks the argument up as a raw key first, then as a quoted
// key. Should a manifest hold a key twice (a resumed snapshot whose file
// changed in between), the last record, the one read most recently, wins.
func findObject(s *store.Store, id, arg string) (store.Object, error) {
	for _, k := range lookupKeys(arg) {
		_, o, err := s.FindObject(id, k)
		if err == nil {
			return o, nil
		}
		if !errors.Is(err, store.ErrNoObject) {
			return store.Object{}, err // the snapshot is missing or damaged
		}
	}
	return store.Object{}, fmt.Errorf("object %s in snapshot %s: %w", displayKey([]byte(arg)), id, store.ErrNotFound)
}
