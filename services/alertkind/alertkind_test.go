package alertkind

import (
	"regexp"
	"testing"
)

func TestKinds(t *testing.T) {
	word := regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
	seen := map[string]bool{}
	for _, k := range All() {
		if !word.MatchString(k) || seen[k] {
			t.Errorf("kind %q: not a lowercase word, or twice", k)
		}
		seen[k] = true
		if !Known(k) {
			t.Errorf("Known(%q) = false", k)
		}
	}
	for _, k := range []string{"", "Attack", "disk-error: x", "pull failed"} {
		if Known(k) {
			t.Errorf("Known(%q) = true", k)
		}
	}
}
