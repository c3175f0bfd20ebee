package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/services/store"
)

func (a *app) storeVerifyCmd(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify DIR --key-file FILE",
		Short: "Read the whole store back and report any damage",
		Long: `verify reads every pack and manifest back, checks every authentication tag
and hash, checks that sealed files carry their immutable flag and that the
retention xattrs agree with the manifests, and names exactly which snapshots
and objects are damaged. It prints the counts and every problem.

verify opens the store read-only and changes nothing. After a crash, files
that were renamed into place but not yet sealed show as flag problems until
the next read-write open (put or prune) seals them. It sorts the IDs of the
good chunks in unnamed files in $TMPDIR (default /tmp; 32 bytes a chunk,
twice at the peak; gone when it exits), so its memory stays flat.

Exit status 1 when any problem was found.`,
		Example: `  holdfast store verify /srv/hf --key-file hf.key`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.open(cmd.Context(), args[0], sf, true)
			if err != nil {
				return err
			}
			defer s.Close()
			r, err := s.Verify(cmd.Context())
			if err != nil {
				return err
			}
			in, err := s.Interrupted()
			if err != nil {
				return err
			}
			out := a.stdout
			fmt.Fprintf(out, "packs      %d\n", r.Packs)
			fmt.Fprintf(out, "chunks     %d\n", r.Chunks)
			fmt.Fprintf(out, "snapshots  %d\n", r.Snapshots)
			fmt.Fprintf(out, "objects    %d\n", r.Objects)
			fmt.Fprintf(out, "bytes      %d (%s)\n", r.Bytes, humanBytes(r.Bytes))
			for _, i := range in {
				fmt.Fprintf(out, "in progress (not damage): %s source %s\n", i.ID, displayText(i.Source))
			}
			fmt.Fprintf(out, "problems   %d\n", len(r.Problems))
			for _, p := range r.Problems {
				fmt.Fprintf(out, "  %s\n", p.String())
			}
			for _, id := range r.DamagedSnapshots {
				fmt.Fprintf(out, "damaged snapshot: %s\n", id)
			}
			for _, o := range r.DamagedObjects {
				fmt.Fprintf(out, "damaged object: %s %s\n", o.Snapshot, displayKey(o.Key))
			}
			if !r.OK() {
				return fmt.Errorf("verify: %d problem(s), %d damaged snapshot(s), %d damaged object(s)",
					len(r.Problems), len(r.DamagedSnapshots), len(r.DamagedObjects))
			}
			fmt.Fprintln(out, "OK")
			return nil
		},
	}
}

type pruneFlags struct {
	dryRun bool
}

func (a *app) storePruneCmd(sf *storeFlags) *cobra.Command {
	pf := &pruneFlags{}
	cmd := &cobra.Command{
		Use:   "prune DIR --key-file FILE [--dry-run]",
		Short: "Remove snapshots whose retention has ended, and packs only they used",
		Long: `prune removes every snapshot whose effective retention has ended (the most
protective of the manifest, its xattrs and any extension records; a legal
hold keeps it) and then every pack none of the kept snapshots or in-progress
snapshots references. The newest snapshot of every source is always kept.
Packs are removed whole, never rewritten.

On a host prune compares retention with this computer's clock (the person
running it vouches for it; the appliance uses its trusted time instead). It
refuses when any manifest or in-progress journal cannot be read.
It clears inode flags, so it needs CAP_LINUX_IMMUTABLE.

--dry-run prints what would be removed and removes nothing (it still takes
the write lock).`,
		Example: `  holdfast store prune /srv/hf --key-file hf.key --dry-run
  holdfast store prune /srv/hf --key-file hf.key`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.open(cmd.Context(), args[0], sf, false)
			if err != nil {
				return err
			}
			defer s.Close()
			before, err := s.Snapshots()
			if err != nil {
				return err
			}
			info := map[string]store.SnapshotInfo{}
			for _, sn := range before {
				info[sn.ID] = sn
			}
			res, err := s.Prune(cmd.Context(), store.PruneOptions{DryRun: pf.dryRun})
			if res != nil {
				a.printPrune(res, info, pf.dryRun)
			}
			if errors.Is(err, store.ErrClockUntrusted) {
				return fmt.Errorf("%w; nothing was removed", err)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&pf.dryRun, "dry-run", false, "print what would be removed; remove nothing")
	return cmd
}

func (a *app) printPrune(res *store.PruneResult, info map[string]store.SnapshotInfo, dryRun bool) {
	out := a.stdout
	verb := "removed"
	if dryRun {
		verb = "would remove"
		fmt.Fprintln(out, "dry run: nothing is removed")
	}
	fmt.Fprintf(out, "clock      %s\n", res.Now.UTC().Format(time.RFC3339))
	fmt.Fprintf(out, "kept       %d snapshot(s), %d pack(s)\n", len(res.Kept), res.KeptPacks)
	fmt.Fprintf(out, "%s %d expired snapshot(s)\n", verb, len(res.Expired))
	for _, id := range res.Expired {
		sn := info[id]
		fmt.Fprintf(out, "  %s source %s retain-until %s\n", id, displayText(sn.Source), formatTime(sn.Retention.RetainUntil))
	}
	fmt.Fprintf(out, "%s %d unreferenced pack(s), %d bytes (%s)\n", verb, len(res.Packs), res.FreedBytes, humanBytes(res.FreedBytes))
	for _, p := range res.Packs {
		fmt.Fprintf(out, "  pack %s\n", p)
	}
}
