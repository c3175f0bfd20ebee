package control

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestTrustBoundaries checks on the import graph that each trust boundary
// of the appliance is a package boundary: PID 1 (firmware/appliance) and
// the worker (firmware/worker) import nothing of each other and share only
// this protocol; the launchers (firmware/roles), which PID 1 imports,
// import neither; the protocol imports nothing of the tree; the export
// imports nothing of PID 1 or the worker.
func TestTrustBoundaries(t *testing.T) {
	const mod = "github.com/holdfast-appliance/holdfast/"
	tests := []struct {
		pkg       string
		forbidden []string // packages of the tree pkg may not depend on; "*" is all of them
		required  []string
	}{
		{"firmware/appliance", []string{"firmware/worker"}, []string{"firmware/control", "firmware/roles"}},
		{"firmware/worker", []string{"firmware/appliance", "firmware/configpart"}, []string{"firmware/control"}},
		{"firmware/roles", []string{"firmware/appliance", "firmware/worker", "firmware/control"}, nil},
		{"firmware/control", []string{"*"}, nil},
		{"services/export", []string{"firmware/appliance", "firmware/worker", "firmware/control", "firmware/tpm"}, nil},
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}}", mod+tt.pkg).Output()
			if err != nil {
				t.Fatalf("go list %s: %v", tt.pkg, err)
			}
			deps := map[string]bool{}
			for _, d := range strings.Fields(string(out)) {
				if rel, ok := strings.CutPrefix(d, mod); ok && rel != tt.pkg {
					deps[rel] = true
				}
			}
			for _, f := range tt.forbidden {
				for d := range deps {
					if f == "*" || d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s depends on %s", tt.pkg, d)
					}
				}
			}
			for _, r := range tt.required {
				if !deps[r] {
					t.Errorf("%s does not import %s (the check would pass for the wrong reason)", tt.pkg, r)
				}
			}
		})
	}
}
