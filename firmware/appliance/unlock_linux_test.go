package appliance

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast-appliance/holdfast/firmware/configpart"
	"github.com/holdfast-appliance/holdfast/firmware/console"
	"github.com/holdfast-appliance/holdfast/firmware/recoverykey"
	"github.com/holdfast-appliance/holdfast/firmware/tpm"
	"github.com/holdfast-appliance/holdfast/firmware/tpm/tpmtest"
)

const unlockTestConfig = `appliance { name = "planted-by-someone" }
source "mail" {
  s3 {
    endpoint   = "attacker.example:9000"
    bucket     = "mail"
    access_key = "READONLY"
    secret_key = "..."
  }
  schedule = "every 6h"
  retention {
    all_for = "14d"
  }
}
`

// TestUnlockShowsConfigFirst: in safe mode, "unlock KEY" checks the paper
// key and shows the summary of the config the key would be resealed to,
// changing nothing; only "unlock yes" after it reseals. A key that does not
// open the box, a config sealed with another key, "unlock yes" with nothing
// waiting and "unlock no" all leave the config partition as it was.
func TestUnlockShowsConfigFirst(t *testing.T) {
	ctx := context.Background()
	master := make([]byte, 32)
	other := make([]byte, 32)
	rand.Read(master)
	rand.Read(other)
	rk, err := recoverykey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := recoverykey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := recoverykey.Wrap(master, rk)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		sealWith  []byte
		steps     []string // console lines typed in order
		wantOut   []string // each must appear in the output
		wantErr   string   // the last step's error
		wantReady bool     // a plan waits for "unlock yes"
	}{
		{"right key shows the config and waits", master, []string{"unlock " + rk.String()},
			[]string{`appliance "planted-by-someone"`, "attacker.example:9000", "Type 'unlock yes'"}, "", true},
		{"wrong key", master, []string{"unlock " + wrong.String()}, nil, "recovery key", false},
		{"config sealed with another key", other, []string{"unlock " + rk.String()}, nil, "not sealed with this box's key", false},
		{"yes with nothing waiting", master, []string{"unlock yes"}, nil, "no recovery key is waiting", false},
		{"no cancels", master, []string{"unlock " + rk.String(), "unlock no"}, []string{"unlock cancelled"}, "", false},
		{"no then yes", master, []string{"unlock " + rk.String(), "unlock no", "unlock yes"}, nil, "no recovery key is waiting", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tpm.RecoveryFile), wrapped, 0o600); err != nil {
				t.Fatal(err)
			}
			blob, err := configpart.SealConfig(tc.sealWith, []byte(unlockTestConfig))
			if err != nil {
				t.Fatal(err)
			}
			part := &configpart.Partition{Dir: dir}
			if err := part.WriteConfig(blob); err != nil {
				t.Fatal(err)
			}
			before := dirSums(t, dir)
			a := &appliance{log: hclog.NewNullLogger(), tpm: tpmtest.Start(t), part: part}
			st := &safeState{}
			var out bytes.Buffer
			var last error
			for _, line := range tc.steps {
				f := strings.Fields(line)
				done, err := a.safeCommand(ctx, st, console.Command{Name: f[0], Args: f[1:]}, &out)
				if done {
					t.Fatalf("%q unlocked the box", line)
				}
				last = err
			}
			switch {
			case tc.wantErr == "" && last != nil:
				t.Fatalf("error %v", last)
			case tc.wantErr != "" && (last == nil || !strings.Contains(last.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", last, tc.wantErr)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if (st.pending != nil) != tc.wantReady {
				t.Errorf("pending plan %v, want %v", st.pending != nil, tc.wantReady)
			}
			if after := dirSums(t, dir); after != before {
				t.Errorf("the config partition changed before any 'unlock yes':\n%s\n->\n%s", before, after)
			}
		})
	}
}

// dirSums names every file of dir with its bytes.
func dirSums(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range es {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.Name() + " " + string(data) + "\n")
	}
	return b.String()
}
