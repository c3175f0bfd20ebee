package main

import (
	"bytes"
	"strconv"
	"testing"
)

func TestDisplayKey(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{"mail/inbox.mbox", "mail/inbox.mbox"},
		{"docs/with spaces.txt", "docs/with spaces.txt"},
		{"unicode/naïve café.txt", "unicode/naïve café.txt"},
		{"bad/\xffname", `"bad/\xffname"`},
		{"tab\there", `"tab\there"`},
		{"new\nline", `"new\nline"`},
		{"", `""`},
		{`"quoted"`, `"\"quoted\""`},
		{"bell\a", `"bell\a"`},
	}
	for _, tt := range tests {
		if got := displayKey([]byte(tt.key)); got != tt.want {
			t.Errorf("displayKey(%q) = %s, want %s", tt.key, got, tt.want)
		}
	}
}

// Every key must survive display + lookup: what ls prints, cat finds.
func TestDisplayKeyRoundTrip(t *testing.T) {
	for _, key := range []string{"plain", "a b", "bad/\xffname", "tab\t", "\"q", "", "\x00", "é\u200b"} {
		shown := displayKey([]byte(key))
		found := false
		for _, k := range lookupKeys(shown) {
			if bytes.Equal(k, []byte(key)) {
				found = true
			}
		}
		if !found {
			t.Errorf("key %q shown as %s is not found back (lookups %q)", key, shown, lookupKeys(shown))
		}
	}
}

func TestLookupKeys(t *testing.T) {
	if got := lookupKeys("plain"); len(got) != 1 || string(got[0]) != "plain" {
		t.Errorf("lookupKeys(plain) = %q", got)
	}
	got := lookupKeys(`"a\xffb"`)
	if len(got) != 2 || string(got[0]) != `"a\xffb"` || string(got[1]) != "a\xffb" {
		t.Errorf("lookupKeys(quoted) = %q", got)
	}
	if got := lookupKeys(`"unterminated`); len(got) != 1 {
		t.Errorf("lookupKeys(bad quote) = %q, want the raw argument only", got)
	}
}

func TestHumanBytes(t *testing.T) {
	tests := map[int64]string{
		0:             "0 B",
		1023:          "1023 B",
		1024:          "1.0 KiB",
		1536:          "1.5 KiB",
		1 << 20:       "1.0 MiB",
		5 << 30:       "5.0 GiB",
		3 << 40:       "3.0 TiB",
		1<<62 + 1<<61: "6.0 EiB",
	}
	for n, want := range tests {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestDisplayText(t *testing.T) {
	for in, want := range map[string]string{"mail": "mail", "": `""`, "a\nb": strconv.Quote("a\nb")} {
		if got := displayText(in); got != want {
			t.Errorf("displayText(%q) = %q, want %q", in, got, want)
		}
	}
}
