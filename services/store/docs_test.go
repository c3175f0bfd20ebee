package store

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// tableAfter returns the first markdown table after the line holding
// marker in text, each line with prefix removed.
func tableAfter(t *testing.T, text, marker, prefix string) []string {
	t.Helper()
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("no %q", marker)
	}
	var out []string
	for _, l := range strings.Split(text[i:], "\n") {
		l, ok := strings.CutPrefix(l, prefix)
		if ok && strings.HasPrefix(l, "|") {
			out = append(out, l)
		} else if len(out) > 0 {
			break
		}
	}
	if len(out) < 3 {
		t.Fatalf("no table after %q", marker)
	}
	return out
}

func human(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// The trusted-files table in docs/store-format.md and doc.go is the same,
// and its bounds are the code's.
func TestTrustedFilesTable(t *testing.T) {
	md, err := os.ReadFile("../../docs/store-format.md")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	fromMD := tableAfter(t, string(md), "## Trusted files", "")
	fromDoc := tableAfter(t, string(doc), "// Trusted files (see", "//\t")
	if strings.Join(fromMD, "\n") != strings.Join(fromDoc, "\n") {
		t.Fatalf("the trusted-files tables differ:\ndocs/store-format.md:\n%s\ndoc.go:\n%s", strings.Join(fromMD, "\n"), strings.Join(fromDoc, "\n"))
	}
	// Rows, continuation lines (empty first cell) joined.
	bounds := map[string]string{}
	var last string
	for _, l := range fromMD[2:] {
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if f := strings.TrimSpace(cells[0]); f != "" {
			last = f
			bounds[f] = strings.TrimSpace(cells[4])
			continue
		}
		if b := strings.TrimSpace(cells[4]); b != "" {
			bounds[last] += " " + b
		}
	}
	if got := (&Store{cfg: storeConfig{PackSize: 1, MaxChunk: 10}}).maxPackFile(); got != 21+maxTrailer+1<<20 {
		t.Errorf("maxPackFile is %d, not pack size + 2 chunks + %s as documented", got, human(maxTrailer+1<<20))
	}
	want := map[string]string{
		"holdfast-store":          human(maxConfigFile),
		"packs/ab/<sha256>":       "pack size + 2 chunks + " + human(maxTrailer+1<<20),
		"snapshots/<id>.snap":     human(maxFrame) + " a frame",
		"its xattrs":              "2 values",
		"retention/<id>.<ns>.ext": human(maxRecordFile),
		"receipts/<id>.receipt":   human(maxRecordFile),
		"recovery/wrapped-key":    human(maxRecordFile),
		"wip/<id>.journal":        human(maxFrame) + " a frame",
		"index/run-<lo>-<hi>":     fmt.Sprintf("%d B a page", max(recPageSize, packPageSize, dirPageSize)),
		"index/index":             "-",
		"state/clock.log":         "last " + human(maxClockLogRead),
		"state/scrub":             human(maxScrubState),
		"lock, tmp/*":             "-",
	}
	for f, w := range want {
		if bounds[f] != w {
			t.Errorf("%s: the table says %q, the code %q", f, bounds[f], w)
		}
	}
	for f := range bounds {
		if _, ok := want[f]; !ok {
			t.Errorf("the table names %s, which the test does not check", f)
		}
	}
}

// The manifest tables in docs/store-format.md are the ones in
// manifest.go, and the tail's fields add up to the size the code reads
// from the end of a manifest.
func TestManifestFormatTables(t *testing.T) {
	md, err := os.ReadFile("../../docs/store-format.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("manifest.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ mdMarker, codeMarker string }{
		{"From `manifest.go`", "// Manifest file layout"},
		{"Format 2 tail", "The format 2 tail body"},
		{"The head, a CBOR map", "The head, a CBOR map"},
		{"object-chunk frame being a CBOR array", "The frame body is a CBOR array of references"},
	} {
		fromMD := tableAfter(t, string(md), tc.mdMarker, "")
		fromCode := tableAfter(t, string(code), tc.codeMarker, "//\t")
		if strings.Join(fromMD, "\n") != strings.Join(fromCode, "\n") {
			t.Errorf("the tables after %q differ:\ndocs/store-format.md:\n%s\nmanifest.go:\n%s", tc.mdMarker, strings.Join(fromMD, "\n"), strings.Join(fromCode, "\n"))
		}
	}
	sum := 0
	for _, l := range tableAfter(t, string(md), "Format 2 tail", "")[2:] {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(strings.Split(l, "|")[1]), "%d", &n); err != nil {
			t.Fatalf("row %q: %v", l, err)
		}
		sum += n
	}
	if sum != tailBodyLen || len(encodeTail(tailV2{})) != tailBodyLen {
		t.Errorf("the tail table adds up to %d bytes, the code writes %d", sum, tailBodyLen)
	}
	if !strings.Contains(string(md), fmt.Sprintf("fixed size (%d bytes: frame header %d, body %d, seal %d)", tailFrameLen, frameHdrLen, tailBodyLen, sealOverhead)) {
		t.Errorf("docs do not give the tail frame's size as %d bytes", tailFrameLen)
	}
}
