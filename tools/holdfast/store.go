package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/services/store"
)

// storeFlags are the flags every store subcommand shares.
type storeFlags struct {
	keyFile string
}

func (a *app) storeCmd() *cobra.Command {
	sf := &storeFlags{}
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Create, fill, list, read, verify and prune a snapshot store",
		Long: `The store subcommands work on a Holdfast store directory. Every subcommand
takes the store directory as its first argument and the master key file with
--key-file (64 hex digits; "store init" creates it when it does not exist).

init, put and prune open the store for writing: they take the store's lock
(one writer at a time), finish what a crash left half done, and need root
(CAP_LINUX_IMMUTABLE) to seal files. ls, cat and verify open it read-only.`,
		Example: `  holdfast store init /srv/hf --key-file hf.key
  holdfast store put /srv/hf --key-file hf.key --source docs --retain 30d ~/docs
  holdfast store ls /srv/hf --key-file hf.key`,
		Args: subcommandArgs,
		RunE: missingSubcommand,
	}
	cmd.PersistentFlags().StringVar(&sf.keyFile, "key-file", "", "file holding the store's master key (64 hex digits)")
	_ = cmd.MarkPersistentFlagRequired("key-file")
	cmd.AddCommand(
		a.storeInitCmd(sf),
		a.storePutCmd(sf),
		a.storeLsCmd(sf),
		a.storeCatCmd(sf),
		a.storeVerifyCmd(sf),
		a.storePruneCmd(sf),
		a.storeDiffCmd(sf),
	)
	return cmd
}

// open opens the store in dir with the key file.
func (a *app) open(ctx context.Context, dir string, sf *storeFlags, readOnly bool) (*store.Store, error) {
	s, err := store.Open(ctx, dir, store.KeyFile(sf.keyFile), store.Options{Logger: a.log, ReadOnly: readOnly})
	switch {
	case errors.Is(err, store.ErrLocked):
		return nil, fmt.Errorf("%s: %w (another holdfast is writing to it)", dir, err)
	case errors.Is(err, store.ErrWrongKey):
		return nil, fmt.Errorf("%s: %w (key file %s)", dir, err, sf.keyFile)
	case err != nil:
		return nil, err
	}
	return s, nil
}

func (a *app) storeInitCmd(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "init DIR --key-file FILE",
		Short: "Create a new, empty store",
		Long: `init creates a new store in DIR, which must not exist or be empty: init never
touches a directory that holds anything.

When the key file does not exist, init first creates it with a new random
key (mode 0600) and says so. Keep that file safe and apart from the store:
without it the store cannot be read, and with it anyone can read the store.

The filesystem must support inode flags (ext4, xfs or btrfs) and the process
needs CAP_LINUX_IMMUTABLE; init checks both before writing anything.`,
		Example: `  holdfast store init /srv/holdfast --key-file /root/holdfast.key`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if _, err := os.Stat(sf.keyFile); errors.Is(err, os.ErrNotExist) {
				if err := store.CreateKeyFile(sf.keyFile); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "created key file %s with a new random key; keep it safe and apart from the store\n", sf.keyFile)
			}
			s, err := store.Init(cmd.Context(), dir, store.KeyFile(sf.keyFile), store.InitOptions{}, store.Options{Logger: a.log})
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(a.stdout, "initialized store %s (id %s)\n", dir, s.ID())
			return nil
		},
	}
}

type putFlags struct {
	source    string
	retain    string
	legalHold bool
}

func (a *app) storePutCmd(sf *storeFlags) *cobra.Command {
	pf := &putFlags{}
	cmd := &cobra.Command{
		Use:   "put DIR --key-file FILE --source NAME --retain PERIOD [--legal-hold] PATH...",
		Short: "Store local files and directory trees as a new snapshot",
		Long: `put stores the files under each PATH as one snapshot of source NAME and
commits it. An object's key is its path relative to the parent of the PATH
that named it ("put DIR /data/mail" gives keys "mail/..."). Symlinks and
special files are skipped and recorded as errors; the snapshot is then
committed but marked incomplete, and put exits 1.

The snapshot is kept at least until now + PERIOD (--retain: ` + retentionHelp + `).
--legal-hold keeps it until the hold is lifted, whatever the period.

When a crash or an interrupt left a snapshot of the same source in progress,
put resumes it instead of starting a new one: objects it already holds
(same key, size and modification time) are not read again, and it keeps the
retention recorded when it began. In-progress snapshots of other sources are
left alone. If put itself fails or is interrupted, its snapshot stays in
progress and running the same put again resumes it.

On success put prints the snapshot ID and what it holds.`,
		Example: `  holdfast store put /srv/hf --key-file hf.key --source mail --retain 30d /var/mail
  holdfast store put /srv/hf --key-file hf.key --source finance --retain 7y --legal-hold /srv/ledger /srv/invoices`,
		Args: usageArgs(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			period, err := parseRetention(pf.retain)
			if err != nil {
				return usageError{fmt.Errorf("--retain: %w", err)}
			}
			until, err := retainUntil(period, time.Now())
			if err != nil {
				return usageError{fmt.Errorf("--retain %s: %w", pf.retain, err)}
			}
			if pf.source == "" {
				return usageErrorf("--source must not be empty")
			}
			return a.put(cmd.Context(), args[0], args[1:], sf, pf, until)
		},
	}
	cmd.Flags().StringVar(&pf.source, "source", "", "name of the source the files come from (interrupted snapshots are resumed per source)")
	cmd.Flags().StringVar(&pf.retain, "retain", "", "how long the snapshot must be kept, e.g. 30d, 12h, 2w, 6m (months), 2y, 1y6m")
	cmd.Flags().BoolVar(&pf.legalHold, "legal-hold", false, "put the snapshot under legal hold (kept until the hold is lifted)")
	_ = cmd.MarkFlagRequired("source")
	_ = cmd.MarkFlagRequired("retain")
	return cmd
}

func (a *app) put(ctx context.Context, dir string, paths []string, sf *storeFlags, pf *putFlags, until time.Time) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err != nil {
			return err
		}
	}
	s, err := a.open(ctx, dir, sf, false)
	if err != nil {
		return err
	}
	defer s.Close()

	sn, err := a.beginOrResume(ctx, s, pf, until)
	if err != nil {
		return err
	}
	if err := sn.PutPaths(ctx, paths); err != nil {
		return fmt.Errorf("%w; snapshot %s stays in progress: run the same put again to resume it", err, sn.ID())
	}
	m, err := sn.Commit(ctx, store.CommitOptions{})
	if err != nil {
		return fmt.Errorf("commit %s: %w", sn.ID(), err)
	}
	fmt.Fprintf(a.stdout, "snapshot %s committed: source %s, %d objects, %d bytes (%s)\n",
		m.ID, displayText(m.Source), m.Count, m.Bytes, humanBytes(m.Bytes))
	fmt.Fprintf(a.stdout, "retain until %s, legal hold %s, complete %s\n",
		formatTime(m.RetainUntil), yesNo(m.LegalHold), yesNo(m.Complete))
	if len(m.Errors) > 0 {
		for _, e := range m.Errors {
			fmt.Fprintf(a.stdout, "  error: %s\n", displayText(e))
		}
		return fmt.Errorf("snapshot %s was committed but is incomplete: %d error(s)", m.ID, len(m.Errors))
	}
	return nil
}

// beginOrResume resumes the newest interrupted snapshot of the same source,
// or begins a new one.
func (a *app) beginOrResume(ctx context.Context, s *store.Store, pf *putFlags, until time.Time) (*store.Snapshot, error) {
	in, err := s.Interrupted()
	if err != nil {
		return nil, err
	}
	var same []store.Interrupted
	for _, i := range in {
		if i.Source == pf.source {
			same = append(same, i)
		} else {
			a.log.Info("leaving in-progress snapshot of another source alone", "snapshot", i.ID, "source", i.Source)
		}
	}
	if len(same) > 0 {
		sort.Slice(same, func(i, j int) bool { return same[i].ID < same[j].ID })
		r := same[len(same)-1]
		for _, o := range same[:len(same)-1] {
			a.log.Warn("older in-progress snapshot of the same source left alone", "snapshot", o.ID, "source", o.Source)
		}
		a.log.Warn("resuming interrupted snapshot; it keeps the retention recorded when it began",
			"snapshot", r.ID, "source", r.Source, "started", r.Started.UTC().Format(time.RFC3339), "objects", r.Objects)
		sn, err := s.Resume(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(a.stdout, "resumed interrupted snapshot %s (%d objects already stored)\n", r.ID, sn.Count())
		return sn, nil
	}
	return s.Begin(ctx, store.BeginOptions{Source: pf.source, RetainUntil: until, LegalHold: pf.legalHold})
}
