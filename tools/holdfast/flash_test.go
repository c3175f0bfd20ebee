package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlashCLI(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "holdfast.img")
	data := bytes.Repeat([]byte("holdfast image\x00\x01\x02"), 100_000)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	existing := filepath.Join(dir, "existing.img")
	tests := []struct {
		name     string
		args     func() []string
		prep     func(t *testing.T)
		code     int
		wantOut  string
		wantErr  string
		target   string // when set: must hold want afterwards
		wantData []byte
	}{
		{"new file", func() []string { return []string{"flash", img, filepath.Join(dir, "new.img")} }, nil,
			exitOK, "sha256", "phase=verify", filepath.Join(dir, "new.img"), data},
		{"existing file without --force", func() []string { return []string{"flash", img, existing} },
			func(t *testing.T) {
				if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
					t.Fatal(err)
				}
			}, exitFailure, "", "--force", existing, []byte("keep me")},
		{"existing file with --force", func() []string { return []string{"flash", "--force", img, existing} }, nil,
			exitOK, "matches", "", existing, data},
		{"image onto itself", func() []string { return []string{"flash", "--force", img, img} }, nil,
			exitFailure, "", "image itself", img, data},
		{"missing image", func() []string { return []string{"flash", filepath.Join(dir, "nope.img"), filepath.Join(dir, "x.img")} }, nil,
			exitFailure, "", "open image", "", nil},
		{"one argument", func() []string { return []string{"flash", img} }, nil,
			exitUsage, "", "accepts 2 arg", "", nil},
		{"help", func() []string { return []string{"flash", "--help"} }, nil,
			exitOK, "HOLDFAST", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.prep != nil {
				tt.prep(t)
			}
			code, out, errOut := runCLI(t, tt.args()...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout %q lacks %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErr)
			}
			if tt.target != "" {
				got, err := os.ReadFile(tt.target)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tt.wantData) {
					t.Errorf("%s holds %d bytes, not the expected %d", tt.target, len(got), len(tt.wantData))
				}
			}
		})
	}
}
