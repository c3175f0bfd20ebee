package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// runCLI runs the command in-process and returns exit code, stdout, stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"plain", errors.New("boom"), exitFailure},
		{"usage", usageErrorf("bad"), exitUsage},
		{"wrapped usage", fmt.Errorf("context: %w", usageErrorf("bad")), exitUsage},
		{"flag error", usageError{pflag.ErrHelp}, exitUsage},
		{"context canceled", context.Canceled, exitFailure},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestUsageExitCodes runs command lines that never reach a store.
func TestUsageExitCodes(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	missing := filepath.Join(dir, "no-store")
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string // substring of stderr
		wantOut string // substring of stdout
	}{
		{"no command", nil, exitUsage, "needs a subcommand", ""},
		{"root help", []string{"--help"}, exitOK, "", "Exit codes"},
		{"help command", []string{"help", "store", "put"}, exitOK, "", "--retain"},
		{"store help", []string{"store", "--help"}, exitOK, "", "--key-file"},
		{"put help", []string{"store", "put", "-h"}, exitOK, "", "Example"},
		{"unknown command", []string{"bogus"}, exitUsage, `unknown command "bogus"`, ""},
		{"unknown command suggests", []string{"stor"}, exitUsage, "did you mean store", ""},
		{"unknown store command", []string{"store", "bogus", "--key-file", key}, exitUsage, `unknown command "bogus" for "holdfast store"`, ""},
		{"store alone", []string{"store"}, exitUsage, "needs a subcommand", ""},
		{"unknown flag", []string{"store", "ls", missing, "--key-file", key, "--nope"}, exitUsage, "unknown flag: --nope", ""},
		{"unknown root flag", []string{"--nope"}, exitUsage, "unknown flag", ""},
		{"ls no args", []string{"store", "ls", "--key-file", key}, exitUsage, "arg(s)", ""},
		{"ls too many args", []string{"store", "ls", "a", "b", "c", "--key-file", key}, exitUsage, "arg(s)", ""},
		{"init two dirs", []string{"store", "init", "a", "b", "--key-file", key}, exitUsage, "arg(s)", ""},
		{"cat two args", []string{"store", "cat", "a", "b", "--key-file", key}, exitUsage, "arg(s)", ""},
		{"verify no dir", []string{"store", "verify", "--key-file", key}, exitUsage, "arg(s)", ""},
		{"put no paths", []string{"store", "put", missing, "--key-file", key, "--source", "s", "--retain", "1d"}, exitUsage, "arg(s)", ""},
		{"missing key file flag", []string{"store", "ls", missing}, exitUsage, `required flag(s) "key-file" not set`, ""},
		{"missing retain", []string{"store", "put", missing, dir, "--key-file", key, "--source", "s"}, exitUsage, `"retain"`, ""},
		{"missing source", []string{"store", "put", missing, dir, "--key-file", key, "--retain", "1d"}, exitUsage, `"source"`, ""},
		{"empty source", []string{"store", "put", missing, dir, "--key-file", key, "--retain", "1d", "--source", ""}, exitUsage, "--source must not be empty", ""},
		{"bad retain", []string{"store", "put", missing, dir, "--key-file", key, "--source", "s", "--retain", "3x"}, exitUsage, "unknown unit", ""},
		{"forever retain", []string{"store", "put", missing, dir, "--key-file", key, "--source", "s", "--retain", "forever"}, exitUsage, "legal-hold", ""},
		{"zero retain", []string{"store", "put", missing, dir, "--key-file", key, "--source", "s", "--retain", "0d"}, exitUsage, "longer than zero", ""},
		{"retain past 2262", []string{"store", "put", missing, dir, "--key-file", key, "--source", "s", "--retain", "500y"}, exitUsage, "latest time", ""},
		{"the clock-jump bound is gone", []string{"store", "prune", missing, "--key-file", key, "--max-clock-jump", "1h"}, exitUsage, "unknown flag", ""},
		{"bad log level", []string{"--log-level", "loud", "store", "ls", missing, "--key-file", key}, exitUsage, "--log-level", ""},
		{"not a store", []string{"store", "ls", missing, "--key-file", key}, exitFailure, "not a Holdfast store", ""},
		{"put missing path", []string{"store", "put", missing, filepath.Join(dir, "nope"), "--key-file", key, "--source", "s", "--retain", "1d"}, exitFailure, "no such file", ""},
		{"init key file in missing dir", []string{"store", "init", filepath.Join(dir, "st"), "--key-file", filepath.Join(dir, "no", "k")}, exitFailure, "create key file", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.wantErr)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout %q does not contain %q", out, tt.wantOut)
			}
			if code != exitOK && !strings.HasPrefix(errOut, "holdfast: ") && !strings.Contains(errOut, "\nholdfast: ") {
				t.Errorf("stderr %q has no %q line", errOut, "holdfast: ")
			}
			if code == exitUsage && !strings.Contains(errOut, "--help' for usage") {
				t.Errorf("usage error without a help hint: %q", errOut)
			}
		})
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed command created %s", missing)
	}
}
