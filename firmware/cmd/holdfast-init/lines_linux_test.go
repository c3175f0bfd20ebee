package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func TestScanLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"status\r", []string{"status"}},
		{"status\n", []string{"status"}},
		{"status\r\nverify\r\n", []string{"status", "verify"}},
		{"\r\r\n\nformat X\r", []string{"format X"}},
		{"formx\x7fat A\x08B\r", []string{"format B"}},
		{"\x1b[Ahelp\r", []string{"[Ahelp"}},
		{"tail without enter", []string{"tail without enter"}},
	} {
		s := bufio.NewScanner(strings.NewReader(tc.in))
		s.Split(scanLines)
		var got []string
		for s.Scan() {
			got = append(got, s.Text())
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEcho(t *testing.T) {
	var b bytes.Buffer
	e := &echoWriter{w: &b}
	if _, err := e.Write([]byte("ab\x7fc\r\x01")); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "ab\x08 \x08c\r\n"; got != want {
		t.Fatalf("echo %q, want %q", got, want)
	}
}
