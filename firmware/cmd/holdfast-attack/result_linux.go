package main

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// outcome is the verdict on one technique.
type outcome int

const (
	outRefused outcome = iota
	outSucceeded
	outNA
)

func (o outcome) String() string {
	switch o {
	case outRefused:
		return "refused"
	case outSucceeded:
		return "SUCCEEDED"
	default:
		return "n/a"
	}
}

// parseOutcome is the inverse of String (for replies of owner children).
func parseOutcome(s string) (outcome, error) {
	for _, o := range []outcome{outRefused, outSucceeded, outNA} {
		if o.String() == s {
			return o, nil
		}
	}
	return outSucceeded, fmt.Errorf("unknown outcome %q", s)
}

// result is what one technique reports.
type result struct {
	outcome outcome
	detail  string
}

func refusedf(format string, a ...any) result {
	return result{outRefused, fmt.Sprintf(format, a...)}
}

func succeededf(format string, a ...any) result {
	return result{outSucceeded, fmt.Sprintf(format, a...)}
}

func naf(format string, a ...any) result { return result{outNA, fmt.Sprintf(format, a...)} }

// combine merges the results of several attempts of one technique: it
// succeeded if any attempt did, else it was refused if any attempt was, else
// it is n/a. The details are joined.
func combine(rs ...result) result {
	out := result{outcome: outNA}
	var details []string
	for _, r := range rs {
		switch {
		case r.outcome == outSucceeded:
			out.outcome = outSucceeded
		case r.outcome == outRefused && out.outcome == outNA:
			out.outcome = outRefused
		}
		if r.detail != "" {
			details = append(details, r.detail)
		}
	}
	out.detail = strings.Join(details, "; ")
	return out
}

// judge classifies an attempt whose effect was checked. err is the
// attempt's error (nil: it returned success, note says what it did),
// changes what the check found different, checkErr why the check could not
// be made. Success or any change is SUCCEEDED; a failed attempt with nothing
// changed is refused.
func judge(note string, err error, changes []change, checkErr error) result {
	ch := summarize(changes, 3)
	switch {
	case err == nil:
		if note == "" {
			note = "returned success"
		}
		if ch != "" {
			note += "; changed: " + ch
		}
		return result{outSucceeded, note}
	case len(changes) > 0:
		return succeededf("%v, yet the check found: %s", err, ch)
	case checkErr != nil:
		return refusedf("%v (effect not checked: %v)", err, checkErr)
	default:
		return result{outRefused, err.Error()}
	}
}

// gate classifies a syscall whose permission check comes before anything
// else it does: EPERM or EACCES is the refusal; success, or any other error
// (the call got past the check and failed on its arguments or state), is
// counted as SUCCEEDED because an attacker with better arguments would
// succeed.
func gate(what string, err error) result {
	switch {
	case err == nil:
		return succeededf("%s: returned success", what)
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return refusedf("%s: %v", what, err)
	default:
		return succeededf("%s: got past the permission check (%v)", what, err)
	}
}

// isPermErr reports a permission refusal.
func isPermErr(err error) bool { return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) }

// summarize lists at most n changes on one line.
func summarize(changes []change, n int) string {
	var parts []string
	for i, c := range changes {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d more", len(changes)-n))
			break
		}
		parts = append(parts, showPath(c.path)+": "+c.what)
	}
	return strings.Join(parts, "; ")
}

// maxDetail bounds a result line's detail.
const maxDetail = 600

// clean makes a detail one short printable line.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > maxDetail {
		cut := maxDetail
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if s == "" {
		s = "-"
	}
	return s
}

// formatLine is one result line of the report.
func formatLine(n int, t *technique, r result) string {
	return fmt.Sprintf("ATTACK %02d %s %s: %s: %s", n, t.cat, t.name, r.outcome, clean(r.detail))
}

// short abbreviates a store path for a detail: a 64-hex pack name keeps
// its first four digits.
func short(rel string) string {
	dir, base := path.Split(rel)
	if len(base) == 64 && strings.Trim(base, "0123456789abcdef") == "" {
		base = base[:4] + "…"
	}
	return dir + base
}

// showPath quotes a path that holds spaces or unprintable characters.
func showPath(p string) string {
	if strings.IndexFunc(p, func(r rune) bool { return !unicode.IsGraphic(r) || unicode.IsSpace(r) }) >= 0 {
		return fmt.Sprintf("%q", p)
	}
	return p
}

// pathErr wraps err with an operation and a short store path.
func pathErr(op, rel string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", op, short(rel), err)
}

// errOr is err's text, or ok when err is nil.
func errOr(err error, ok string) string {
	if err == nil {
		return ok
	}
	return err.Error()
}
