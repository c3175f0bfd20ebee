// Package console is Holdfast's serial-console conversation, both sides:
// the appliance asks for its configuration (WaitForConfig) and the host
// tool answers (Push), over the framed link of package frame, with human
// lines on the same stream for a person watching.
//
// The exchange (every message frame is acknowledged by the link):
//
//	appliance                          host
//	HELLO {state:"waiting-for-config"} ─►   (repeated every HelloInterval)
//	                                   ◄─ CONFIG-BEGIN {size, sha256}
//	                                   ◄─ CONFIG-DATA × n (≤ 1 KiB each)
//	                                   ◄─ CONFIG-END
//	(validate)
//	SUMMARY "text"                     ─►
//	PROMPT "type yes to apply ..."     ─►
//	                                   ◄─ ANSWER "yes"   (or a line typed on the console)
//	RESULT {ok, sha256, message}       ─►
//
// A config that fails validation, or a missing "yes", gets RESULT with
// ok=false and the appliance goes back to waiting.
//
// Limits: this is the foundation of the console: sealing and storing the
// accepted config, status, formatting disks, retention and the recovery
// key are later work. Configs are at most MaxConfigSize bytes.
package console

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/holdfast-appliance/holdfast/services/config"
)

// Limits and timings.
const (
	// MaxConfigSize bounds a pushed config file.
	MaxConfigSize = 256 << 10
	// DefaultHelloInterval is how often a waiting appliance announces itself.
	DefaultHelloInterval = 3 * time.Second
	// DefaultConfirmTimeout is how long the appliance waits for "yes".
	DefaultConfirmTimeout = 5 * time.Minute
	// WaitingLine is the human line a waiting appliance prints.
	WaitingLine = "holdfast: waiting for config"
	// AcceptedLine starts the human line printed when a config is accepted.
	AcceptedLine = "holdfast: config accepted"
)

// Hello is the HELLO payload.
type Hello struct {
	State   string `json:"state"` // "waiting-for-config"
	Board   string `json:"board"`
	Version string `json:"version"`
	// PCR11 is the TPM's SHA-256 PCR 11 as the appliance read it (hex),
	// empty without a TPM: the host can compare it with the value the
	// image build predicted.
	PCR11 string `json:"pcr11,omitempty"`
}

// ConfigBegin is the CONFIG-BEGIN payload.
type ConfigBegin struct {
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
}

// Result is the RESULT payload.
type Result struct {
	OK      bool   `json:"ok"`
	SHA256  string `json:"sha256,omitempty"`
	Message string `json:"message"`
}

// ErrRejected is returned by Push when the appliance refused the config.
var ErrRejected = errors.New("appliance rejected the config")

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Validate parses src with services/config and returns a short summary of
// what it configures, for the operator to confirm.
func Validate(src []byte) (string, error) {
	f, err := config.Parse("pushed.hcl", src)
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "appliance %q, %d source(s)\n", f.Appliance.Name, len(f.Sources))
	fmt.Fprintf(&b, "  maintenance reboot (prune): %s (UTC)\n", f.Appliance.Maintenance)
	for _, s := range f.Sources {
		fmt.Fprintf(&b, "  source %q: s3 %s bucket %q prefix %q tls=%v, %s", s.Name, s.S3.Endpoint, s.S3.Bucket, s.S3.Prefix, s.S3.TLS, s.Schedule)
		r := s.Retention
		switch {
		case r.Forever:
			b.WriteString(", keep forever")
		default:
			fmt.Fprintf(&b, ", keep all %s daily %s weekly %s monthly %s yearly %s", r.AllFor, r.DailyFor, r.WeeklyFor, r.MonthlyFor, r.YearlyFor)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "sha256 %s\n", sum(src))
	return b.String(), nil
}
