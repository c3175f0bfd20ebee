package console

import (
	"bytes"
	"testing"

	"github.com/holdfast-appliance/holdfast/firmware/console/frame"
)

func TestQuote(t *testing.T) {
	forged, err := frame.Encode(frame.Frame{Type: frame.TypeDone, Seq: 7, Payload: []byte(`{"id":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, in, want string }{
		{"plain log line", "12:00:00 [INFO] pull done: objects=3\n", "12:00:00 [INFO] pull done: objects=3\n"},
		{"tab and non-ASCII", "key\tboîte/été.eml\n", "key\tboîte/été.eml\n"},
		{"clear screen, fake status", "\x1b[2J\x1b[Hstatus: OK\n", `\x1b[2J\x1b[Hstatus: OK` + "\n"},
		{"OSC 52 clipboard", "\x1b]52;c;cm0gLXJmIC8=\x07", `\x1b]52;c;cm0gLXJmIC8=\x07`},
		{"carriage return overwrite", "error\rOK   \n", `error\x0dOK   ` + "\n"},
		{"C1 CSI as UTF-8", "\u009b2J", `\xc2\x9b2J`},
		{"DEL and NUL", "a\x7fb\x00", `a\x7fb\x00`},
		{"frame magic", "\xf1HF\x9e", `\xf1HF\x9e`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(Quote([]byte(tc.in))); got != tc.want {
				t.Errorf("Quote(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	// A whole frame written by a child as text decodes as text only.
	var out bytes.Buffer
	w := QuoteWriter{W: &out}
	if n, err := w.Write(forged); n != len(forged) || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	var d frame.Decoder
	d.Feed(out.Bytes())
	for {
		ev, ok := d.Next()
		if !ok {
			break
		}
		if ev.Kind == frame.EventFrame {
			t.Fatalf("a quoted forged frame decoded as %s", ev.Frame.Type)
		}
	}
}
