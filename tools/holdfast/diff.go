package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/holdfast-appliance/holdfast/services/store"
)

func (a *app) storeDiffCmd(sf *storeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "diff DIR --key-file FILE SNAPSHOT1 SNAPSHOT2",
		Short: "List objects added, changed and removed between two snapshots",
		Long: `diff compares two snapshots object by object (an object is a key and, for
versioned sources, a version ID) and prints one line per difference, sorted
by key:

  added    SIZE  KEY [version=ID]     in SNAPSHOT2 only
  changed  SIZE  KEY [version=ID]     in both, with another size, ETag or content
  removed  SIZE  KEY [version=ID]     in SNAPSHOT1 only

then a summary line. SIZE is the size in SNAPSHOT2 (SNAPSHOT1 for removed).
Recorded S3 delete markers are shown with "[delete marker]". Keys are shown
as by "store ls": a key that is not printable UTF-8 (NUL, newline, invalid
UTF-8) is printed Go-quoted, so every line is one object.

diff opens the store read-only and changes nothing.`,
		Example: `  holdfast store diff /srv/hf --key-file hf.key 20250101T020000Z-1a2b3c4d 20250101T080000Z-5e6f7a8b`,
		Args:    usageArgs(cobra.ExactArgs(3)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.open(cmd.Context(), args[0], sf, true)
			if err != nil {
				return err
			}
			defer s.Close()
			return a.diff(s, args[1], args[2])
		},
	}
}

// diffKey identifies an object across snapshots.
type diffKey struct{ key, version string }

// diffLine is one difference.
type diffLine struct {
	kind string
	obj  store.Object
}

// diffManifests returns the differences from m1 to m2, sorted by key and
// version, and the number of unchanged objects.
func diffManifests(m1, m2 *store.Manifest) ([]diffLine, int) {
	old := make(map[diffKey]store.Object, len(m1.Objects))
	for _, o := range m1.Objects {
		old[diffKey{string(o.Key), o.VersionID}] = o
	}
	var out []diffLine
	same := 0
	seen := make(map[diffKey]bool, len(m2.Objects))
	for _, o := range m2.Objects {
		k := diffKey{string(o.Key), o.VersionID}
		seen[k] = true
		p, ok := old[k]
		switch {
		case !ok:
			out = append(out, diffLine{"added", o})
		case p.Size != o.Size || p.ETag != o.ETag || !slices.Equal(p.Chunks, o.Chunks):
			out = append(out, diffLine{"changed", o})
		default:
			same++
		}
	}
	for _, o := range m1.Objects {
		if !seen[diffKey{string(o.Key), o.VersionID}] {
			out = append(out, diffLine{"removed", o})
		}
	}
	slices.SortFunc(out, func(x, y diffLine) int {
		if c := bytes.Compare(x.obj.Key, y.obj.Key); c != 0 {
			return c
		}
		return strings.Compare(x.obj.VersionID, y.obj.VersionID)
	})
	return out, same
}

func (a *app) diff(s *store.Store, id1, id2 string) error {
	m1, err := s.ReadManifest(id1)
	if err != nil {
		return err
	}
	m2, err := s.ReadManifest(id2)
	if err != nil {
		return err
	}
	lines, same := diffManifests(m1, m2)
	counts := map[string]int{}
	for _, l := range lines {
		counts[l.kind]++
		extra := ""
		if l.obj.VersionID != "" {
			extra += " version=" + displayText(l.obj.VersionID)
		}
		if l.obj.DeleteMarker {
			extra += " [delete marker]"
		}
		fmt.Fprintf(a.stdout, "%-8s %10s  %s%s\n", l.kind, humanBytes(l.obj.Size), displayKey(l.obj.Key), extra)
	}
	if m1.Source != m2.Source {
		fmt.Fprintf(a.stdout, "note: the snapshots are of different sources (%s, %s)\n", displayText(m1.Source), displayText(m2.Source))
	}
	fmt.Fprintf(a.stdout, "%d added, %d changed, %d removed, %d unchanged\n", counts["added"], counts["changed"], counts["removed"], same)
	return nil
}
