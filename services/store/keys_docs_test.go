package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// hkdfLabel is the form of every HKDF label of the code.
var hkdfLabel = regexp.MustCompile(`^holdfast [a-z0-9 -]+ v[0-9]+$`)

// codeLabels returns the "holdfast ... vN" string literals of the non-test
// Go files under roots that import crypto/hkdf.
func codeLabels(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(f.Imports, func(s *ast.ImportSpec) bool { return s.Path.Value == `"crypto/hkdf"` }) {
				return nil
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil && hkdfLabel.MatchString(v) {
						out[v] = p
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestKeyTableMatchesCode: the key table of docs/keys.md lists exactly the
// HKDF labels of the code, the store's own among them.
func TestKeyTableMatchesCode(t *testing.T) {
	md, err := os.ReadFile("../../docs/keys.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := tableAfter(t, string(md), "## Key table", "")
	doc := map[string]bool{}
	for _, r := range rows[2:] {
		cells := strings.Split(r, "|")
		if len(cells) < 4 {
			t.Fatalf("short row %q", r)
		}
		label := strings.Trim(strings.TrimSpace(cells[2]), "`")
		if !hkdfLabel.MatchString(label) {
			t.Fatalf("row %q: label %q is not a holdfast HKDF label", r, label)
		}
		if doc[label] {
			t.Fatalf("label %q listed twice", label)
		}
		doc[label] = true
	}
	code := codeLabels(t, "../../firmware", "../../services", "../../tools")
	for l, file := range code {
		if !doc[l] {
			t.Errorf("HKDF label %q (%s) is missing from the key table of docs/keys.md", l, file)
		}
	}
	for l := range doc {
		if _, ok := code[l]; !ok {
			t.Errorf("the key table lists %q, which no HKDF call of the code uses", l)
		}
	}
	for _, l := range KeyLabels() {
		if !doc[l] {
			t.Errorf("store subkey label %q is missing from the key table", l)
		}
	}
	if len(code) < 10 {
		t.Fatalf("found only %d labels in the code: %v", len(code), code)
	}
}
