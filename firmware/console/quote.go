package console

import (
	"fmt"
	"io"
	"unicode"
	"unicode/utf8"
)

// Quote returns p with everything a terminal could act on written as
// visible escapes: each byte of a control character (ESC and the rest of
// C0, DEL, C1, a lone CR), of a rune that is not printable and of invalid
// UTF-8 (such as the frame magic's 0xF1) becomes \xNN. Newlines, tabs and
// printable text, non-ASCII included, pass unchanged. Bytes that other
// processes wrote (child logs, worker-supplied fields, the appliance's
// text on the host) go through it before they reach a person's terminal,
// so they can neither fake a screen (a clean status, a cleared line) nor
// send terminal commands (set the clipboard, a title) nor start a frame.
func Quote(p []byte) []byte {
	out := make([]byte, 0, len(p))
	for len(p) > 0 {
		r, n := utf8.DecodeRune(p)
		switch {
		case r == '\n' || r == '\t':
			out = append(out, p[0])
		case (r == utf8.RuneError && n <= 1) || !unicode.IsPrint(r):
			for _, b := range p[:n] {
				out = fmt.Appendf(out, `\x%02x`, b)
			}
		default:
			out = append(out, p[:n]...)
		}
		p = p[n:]
	}
	return out
}

// QuoteWriter writes what it is given through Quote to W. A rune split
// across two writes is escaped byte by byte: safe, if less readable.
type QuoteWriter struct{ W io.Writer }

// Write quotes p to w.W and reports len(p) written on success.
func (w QuoteWriter) Write(p []byte) (int, error) {
	if _, err := w.W.Write(Quote(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
