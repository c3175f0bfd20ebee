package recoverykey

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFormatAndParse(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	s := k.String()
	if len(s) != Groups*GroupDigits+Groups-1 || strings.Count(s, "-") != Groups-1 {
		t.Fatalf("bad format %q", s)
	}
	variants := map[string]string{
		"as shown":      s,
		"spaces":        strings.ReplaceAll(s, "-", " "),
		"no separators": strings.ReplaceAll(s, "-", ""),
		"extra spaces":  "  " + strings.ReplaceAll(s, "-", " -  ") + "\n",
		"odd grouping":  strings.ReplaceAll(s, "-", "")[:10] + " " + strings.ReplaceAll(s, "-", "")[10:],
	}
	for name, in := range variants {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(in)
			if err != nil {
				t.Fatalf("parse %q: %v", in, err)
			}
			if got != k {
				t.Fatalf("parse %q gave another key", in)
			}
		})
	}
}

// TestTyposNamedByGroup: every single-digit error and every swap of two
// neighbouring digits, in every group, is caught and names its group.
func TestTyposNamedByGroup(t *testing.T) {
	k, _ := Generate()
	groups := strings.Split(k.String(), "-")
	mutate := func(g int, f func([]byte) bool) (string, bool) {
		gs := append([]string(nil), groups...)
		b := []byte(gs[g])
		if !f(b) {
			return "", false
		}
		gs[g] = string(b)
		return strings.Join(gs, "-"), true
	}
	n := 0
	for g := range Groups {
		for i := range GroupDigits {
			for d := byte(1); d < 10; d++ {
				in, _ := mutate(g, func(b []byte) bool { b[i] = '0' + (b[i]-'0'+d)%10; return true })
				checkGroupErr(t, in, g+1)
				n++
			}
			if i+1 < GroupDigits {
				if in, ok := mutate(g, func(b []byte) bool {
					if b[i] == b[i+1] {
						return false
					}
					b[i], b[i+1] = b[i+1], b[i]
					return true
				}); ok {
					checkGroupErr(t, in, g+1)
					n++
				}
			}
		}
	}
	if n < Groups*GroupDigits*9 {
		t.Fatalf("only %d typos tried", n)
	}
}

func checkGroupErr(t *testing.T, in string, group int) {
	t.Helper()
	_, err := Parse(in)
	var ge *GroupError
	if !errors.As(err, &ge) || ge.Group != group {
		t.Fatalf("parse %q: got %v, want an error naming group %d", in, err, group)
	}
	if !strings.Contains(err.Error(), "group ") {
		t.Fatalf("error does not name the group: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	k, _ := Generate()
	s := k.String()
	cases := []struct {
		name  string
		in    string
		group int // 0: a shape error, no group
	}{
		{"empty", "", 0},
		{"seven groups", s[:len(s)-7], 0},
		{"letter in group 2", s[:7] + "a" + s[8:], 2},
		{"group 3 short, group 4 long", s[:14] + s[15:20] + "-" + s[21:27] + s[20:21] + s[27:], 3},
		{"groups 1 and 2 swapped", s[7:13] + "-" + s[:6] + s[13:], 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("parse %q succeeded", tc.in)
			}
			var ge *GroupError
			isGroup := errors.As(err, &ge)
			if tc.group == 0 && isGroup {
				t.Fatalf("parse %q: got a group error %v, want a shape error", tc.in, err)
			}
			if tc.group != 0 && (!isGroup || ge.Group != tc.group) {
				t.Fatalf("parse %q: got %v, want group %d", tc.in, err, tc.group)
			}
		})
	}
}

func TestWrapUnwrap(t *testing.T) {
	k, _ := Generate()
	other, _ := Generate()
	master := bytes.Repeat([]byte{0x5a}, 32)
	blob, err := Wrap(master, k)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) != WrappedSize {
		t.Fatalf("wrapped size %d, want %d", len(blob), WrappedSize)
	}
	flip := func(i int) []byte { b := bytes.Clone(blob); b[i] ^= 1; return b }
	cases := []struct {
		name string
		blob []byte
		key  Key
		want error // nil: opens
	}{
		{"right key", blob, k, nil},
		{"other key", blob, other, ErrWrongKey},
		{"salt changed", flip(20), k, ErrWrongKey},
		{"ciphertext changed", flip(60), k, ErrWrongKey},
		{"magic changed", flip(0), k, errAny},
		{"truncated", blob[:len(blob)-1], k, errAny},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Unwrap(tc.blob, tc.key)
			switch {
			case tc.want == nil:
				if err != nil || !bytes.Equal(got, master) {
					t.Fatalf("unwrap: %v", err)
				}
			case tc.want == errAny:
				if err == nil {
					t.Fatal("unwrap succeeded")
				}
			default:
				if !errors.Is(err, tc.want) {
					t.Fatalf("unwrap: got %v, want %v", err, tc.want)
				}
			}
		})
	}

	path := filepath.Join(t.TempDir(), "wrapped")
	if err := WriteFile(path, blob); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, blob); !errors.Is(err, os.ErrExist) {
		t.Fatalf("overwrite: got %v, want os.ErrExist", err)
	}
	got, err := Opener{Key: k, Path: path}.MasterKey(context.Background())
	if err != nil || !bytes.Equal(got, master) {
		t.Fatalf("opener: %v", err)
	}
	if _, err := (Opener{Key: other, Path: path}).MasterKey(context.Background()); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("opener with another key: got %v", err)
	}
}

var errAny = errors.New("any error")
