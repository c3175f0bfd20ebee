// Package frame is the wire format Holdfast speaks on the serial console:
// checksummed, sequenced frames that share one byte stream with kernel
// messages, log lines and whatever an operator types. A Decoder splits such
// a stream back into frames and plain text, resynchronising on the magic
// after any damage; a Conn (link.go) adds acknowledgements, retries with
// timeouts and duplicate suppression on top.
//
// Wire format (all integers big-endian):
//
//	offset  size  field
//	0       4     magic F1 48 46 9E ("\xF1HF\x9E"; 0xF1/0x9E never occur in ASCII text)
//	4       1     version (1)
//	5       1     type (Type)
//	6       2     sequence number (sender's counter; ACK/NACK carry the acked one)
//	8       2     payload length n, at most MaxPayload
//	10      n     payload
//	10+n    4     CRC-32 (IEEE) of bytes 4 .. 10+n (version through payload)
//
// Limits: a frame carries at most MaxPayload bytes; larger messages (a
// config file) are split by the caller. The CRC detects damage, it does not
// authenticate: anyone on the serial line can speak this protocol, which is
// the point (the cable is the trust boundary, see the design brief).
package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Wire constants.
const (
	Version    = 1
	HeaderSize = 10
	TrailerLen = 4
	// MaxPayload bounds a frame's payload: at 115200 baud a full frame
	// takes about 90 ms, so a retry is cheap.
	MaxPayload = 1024
	// MaxFrame is the largest encoded frame.
	MaxFrame = HeaderSize + MaxPayload + TrailerLen
)

// Magic starts every frame.
var Magic = [4]byte{0xF1, 'H', 'F', 0x9E}

// Type is a frame's type.
type Type uint8

// Frame types. Link-level: Ack, Nack. The rest are messages.
const (
	TypeAck         Type = 0x01 // link: frame Seq arrived intact
	TypeNack        Type = 0x02 // link: a frame claiming Seq arrived damaged; resend
	TypeHello       Type = 0x10 // appliance→host: JSON Hello; sent every few seconds while waiting
	TypeConfigBegin Type = 0x11 // host→appliance: JSON ConfigBegin (size, sha256)
	TypeConfigData  Type = 0x12 // host→appliance: the next chunk of the config file
	TypeConfigEnd   Type = 0x13 // host→appliance: no more chunks
	TypeSummary     Type = 0x14 // appliance→host: text summary of the config and what changes
	TypePrompt      Type = 0x15 // appliance→host: text of the question to confirm
	TypeAnswer      Type = 0x16 // host→appliance: the operator's answer, text
	TypeResult      Type = 0x17 // appliance→host: JSON Result (accepted or why not)
	TypeText        Type = 0x18 // either way: a human line, shown by the other side
	TypeCommand     Type = 0x19 // host→appliance: JSON Command (status, snapshots, format, ...)
	TypeOutput      Type = 0x1A // appliance→host: the next piece of a command's output, text
	TypeDone        Type = 0x1B // appliance→host: JSON Done, the command finished
)

var typeNames = map[Type]string{
	TypeAck: "ACK", TypeNack: "NACK", TypeHello: "HELLO", TypeConfigBegin: "CONFIG-BEGIN",
	TypeConfigData: "CONFIG-DATA", TypeConfigEnd: "CONFIG-END", TypeSummary: "SUMMARY",
	TypePrompt: "PROMPT", TypeAnswer: "ANSWER", TypeResult: "RESULT", TypeText: "TEXT",
	TypeCommand: "COMMAND", TypeOutput: "OUTPUT", TypeDone: "DONE",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%#02x)", uint8(t))
}

// Known reports whether t is a defined type.
func (t Type) Known() bool { _, ok := typeNames[t]; return ok }

// Frame is one decoded frame.
type Frame struct {
	Type    Type
	Seq     uint16
	Payload []byte
}

// Errors.
var (
	ErrTooLarge = errors.New("frame payload too large")
	ErrType     = errors.New("unknown frame type")
)

// Append encodes f onto dst.
func Append(dst []byte, f Frame) ([]byte, error) {
	if len(f.Payload) > MaxPayload {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(f.Payload), MaxPayload)
	}
	if !f.Type.Known() {
		return dst, fmt.Errorf("encode: %w %d", ErrType, f.Type)
	}
	start := len(dst)
	dst = append(dst, Magic[:]...)
	dst = append(dst, Version, byte(f.Type))
	dst = binary.BigEndian.AppendUint16(dst, f.Seq)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(f.Payload)))
	dst = append(dst, f.Payload...)
	sum := crc32.ChecksumIEEE(dst[start+len(Magic):])
	return binary.BigEndian.AppendUint32(dst, sum), nil
}

// Encode returns f encoded.
func Encode(f Frame) ([]byte, error) {
	return Append(make([]byte, 0, HeaderSize+len(f.Payload)+TrailerLen), f)
}

// EventKind says what a Decoder event holds.
type EventKind int

// Event kinds.
const (
	// EventText is a run of bytes that are not part of a frame.
	EventText EventKind = iota
	// EventFrame is an intact frame.
	EventFrame
	// EventDamaged is a frame whose header looked right but whose CRC,
	// version or type did not check; Seq is the (untrusted) header's.
	EventDamaged
)

// Event is one thing found in the stream.
type Event struct {
	Kind  EventKind
	Text  []byte // EventText: the bytes (valid until the next Feed or Next)
	Frame Frame  // EventFrame; EventDamaged has Frame.Seq and Frame.Type only
}

// maxPending bounds the bytes a Decoder holds while it waits for the rest
// of a frame.
const maxPending = 4 * MaxFrame

// Decoder splits a byte stream into text and frames. Feed it bytes, then
// call Next until it reports no more events. Not safe for concurrent use.
type Decoder struct {
	buf []byte
}

// Feed appends p to the bytes awaiting decoding.
func (d *Decoder) Feed(p []byte) { d.buf = append(d.buf, p...) }

// Next returns the next event, or ok=false when more bytes are needed.
func (d *Decoder) Next() (ev Event, ok bool) {
	if len(d.buf) == 0 {
		d.buf = d.buf[:0]
		return Event{}, false
	}
	i := bytes.Index(d.buf, Magic[:])
	if i < 0 {
		// No magic: everything is text except a tail that may be the
		// start of one.
		keep := partialMagic(d.buf)
		n := len(d.buf) - keep
		if n == 0 {
			return Event{}, false
		}
		return d.text(n), true
	}
	if i > 0 {
		return d.text(i), true
	}
	// A magic at the start of the buffer.
	if len(d.buf) < HeaderSize {
		return Event{}, false
	}
	ver, typ := d.buf[4], Type(d.buf[5])
	seq := binary.BigEndian.Uint16(d.buf[6:8])
	n := int(binary.BigEndian.Uint16(d.buf[8:10]))
	if n > MaxPayload || ver != Version {
		// Not a frame we can read: treat the first byte as text and
		// look for the next magic.
		return d.damaged(typ, seq), true
	}
	total := HeaderSize + n + TrailerLen
	if len(d.buf) < total {
		if len(d.buf) > maxPending {
			return d.damaged(typ, seq), true
		}
		return Event{}, false
	}
	want := binary.BigEndian.Uint32(d.buf[HeaderSize+n : total])
	if crc32.ChecksumIEEE(d.buf[len(Magic):HeaderSize+n]) != want || !typ.Known() {
		return d.damaged(typ, seq), true
	}
	f := Frame{Type: typ, Seq: seq, Payload: append([]byte(nil), d.buf[HeaderSize:HeaderSize+n]...)}
	d.consume(total)
	return Event{Kind: EventFrame, Frame: f}, true
}

// damaged drops the first byte of a false or broken frame, so that the
// search for the next magic starts inside it (a real frame may begin
// there), and reports the damage.
func (d *Decoder) damaged(typ Type, seq uint16) Event {
	d.consume(1)
	return Event{Kind: EventDamaged, Frame: Frame{Type: typ, Seq: seq}}
}

func (d *Decoder) text(n int) Event {
	t := append([]byte(nil), d.buf[:n]...)
	d.consume(n)
	return Event{Kind: EventText, Text: t}
}

func (d *Decoder) consume(n int) {
	rest := copy(d.buf, d.buf[n:])
	d.buf = d.buf[:rest]
}

// partialMagic returns how many bytes at the end of b are a proper prefix
// of Magic.
func partialMagic(b []byte) int {
	for k := len(Magic) - 1; k > 0; k-- {
		if len(b) >= k && bytes.Equal(b[len(b)-k:], Magic[:k]) {
			return k
		}
	}
	return 0
}
