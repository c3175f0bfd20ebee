package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// displayKey renders an object key for a listing. A key of printable UTF-8
// (spaces allowed, no tabs or newlines) that does not start with a double
// quote is printed as is; any other key is printed Go-quoted (as
// strconv.Quote), so every key is shown unambiguously on one line and
// `holdfast store cat` accepts that quoted form back.
func displayKey(key []byte) string {
	if len(key) > 0 && key[0] != '"' && utf8.Valid(key) && isPrintable(string(key)) {
		return string(key)
	}
	return strconv.Quote(string(key))
}

func isPrintable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// displayText renders a free-form string (a source name) on one line.
func displayText(s string) string {
	if s != "" && utf8.ValidString(s) && isPrintable(s) && !strings.HasPrefix(s, `"`) {
		return s
	}
	return strconv.Quote(s)
}

// lookupKeys returns the keys an OBJECT argument may name: the argument's
// bytes as given and, when it is Go-quoted as `ls` prints awkward keys, the
// unquoted bytes.
func lookupKeys(arg string) [][]byte {
	keys := [][]byte{[]byte(arg)}
	if len(arg) >= 2 && arg[0] == '"' {
		if u, err := strconv.Unquote(arg); err == nil && u != arg {
			keys = append(keys, []byte(u))
		}
	}
	return keys
}

// humanBytes renders n in binary units, e.g. "1.5 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// formatTime renders t in UTC to the second; the zero time is "-".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
