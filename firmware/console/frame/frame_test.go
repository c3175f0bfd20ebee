package frame

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"testing"
)

func mustEncode(t testing.TB, f Frame) []byte {
	t.Helper()
	b, err := Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeAll feeds in chunks of size step and collects text and frames.
func decodeAll(in []byte, step int) (text []byte, frames []Frame, damaged int) {
	var d Decoder
	for len(in) > 0 {
		n := min(step, len(in))
		d.Feed(in[:n])
		in = in[n:]
		for {
			ev, ok := d.Next()
			if !ok {
				break
			}
			switch ev.Kind {
			case EventText:
				text = append(text, ev.Text...)
			case EventFrame:
				frames = append(frames, ev.Frame)
			case EventDamaged:
				damaged++
			}
		}
	}
	return text, frames, damaged
}

func TestEncodeLayout(t *testing.T) {
	b := mustEncode(t, Frame{Type: TypeText, Seq: 0x0102, Payload: []byte("hi")})
	want := []byte{0xF1, 'H', 'F', 0x9E, 1, 0x18, 0x01, 0x02, 0x00, 0x02, 'h', 'i'}
	if !bytes.Equal(b[:12], want) {
		t.Fatalf("header % x, want % x", b[:12], want)
	}
	sum := crc32.ChecksumIEEE(b[4:12])
	if got := uint32(b[12])<<24 | uint32(b[13])<<16 | uint32(b[14])<<8 | uint32(b[15]); got != sum {
		t.Fatalf("crc %08x, want %08x", got, sum)
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
		want error
	}{
		{"too large", Frame{Type: TypeText, Payload: make([]byte, MaxPayload+1)}, ErrTooLarge},
		{"unknown type", Frame{Type: 0x77}, ErrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Encode(tt.f); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Encode(Frame{Type: TypeText, Payload: make([]byte, MaxPayload)}); err != nil {
		t.Fatalf("MaxPayload frame: %v", err)
	}
}

func TestDecode(t *testing.T) {
	hello := Frame{Type: TypeHello, Seq: 7, Payload: []byte(`{"state":"waiting-for-config"}`)}
	data := Frame{Type: TypeConfigData, Seq: 8, Payload: bytes.Repeat([]byte{0xF1, 'H', 'F', 0x9E, 0, 0xff}, 100)}
	ack := Frame{Type: TypeAck, Seq: 9}
	h, d, a := mustEncode(t, hello), mustEncode(t, data), mustEncode(t, ack)
	corrupt := append([]byte(nil), d...)
	corrupt[HeaderSize+3] ^= 0x40
	badVersion := append([]byte(nil), h...)
	badVersion[4] = 9
	huge := append(append([]byte(nil), Magic[:]...), 1, byte(TypeText), 0, 1, 0xff, 0xff)
	kernel := []byte("[    2.345678] virtio_blk virtio1: [vda] 16777216 512-byte logical blocks\r\n")
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name    string
		in      []byte
		text    []byte
		frames  []Frame
		damaged int
	}{
		{"one frame", h, nil, []Frame{hello}, 0},
		{"text only", kernel, kernel, nil, 0},
		{"text around frames", cat(kernel, h, kernel, d, a, kernel), cat(kernel, kernel, kernel), []Frame{hello, data, ack}, 0},
		{"frame split by a kernel line is lost, next one found", cat(h[:6], kernel, h[6:], a), nil, []Frame{ack}, -1},
		{"corrupt payload with magics inside", cat(corrupt, h), nil, []Frame{hello}, -1},
		{"corrupt ack", cat(a[:len(a)-1], []byte{^a[len(a)-1]}, h), nil, []Frame{hello}, 1},
		{"bad version", cat(badVersion, a), nil, []Frame{ack}, 1},
		{"length over limit", cat(huge, h), huge[1:], []Frame{hello}, 1},
		{"magic prefix in text", cat([]byte("\xF1HF x"), h), []byte("\xF1HF x"), []Frame{hello}, 0},
		{"truncated frame at end waits", cat(h, a[:len(a)-1]), nil, []Frame{hello}, 0},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 3, 17, 4096} {
			text, frames, damaged := decodeAll(tt.in, step)
			if len(frames) != len(tt.frames) {
				t.Fatalf("%s/step %d: %d frames, want %d", tt.name, step, len(frames), len(tt.frames))
			}
			for i := range frames {
				if frames[i].Type != tt.frames[i].Type || frames[i].Seq != tt.frames[i].Seq || !bytes.Equal(frames[i].Payload, tt.frames[i].Payload) {
					t.Errorf("%s/step %d: frame %d = %+v, want %+v", tt.name, step, i, frames[i], tt.frames[i])
				}
			}
			if tt.damaged >= 0 && damaged != tt.damaged {
				t.Errorf("%s/step %d: %d damaged, want %d", tt.name, step, damaged, tt.damaged)
			}
			if tt.damaged >= 0 && tt.text != nil && !bytes.Contains(text, tt.text) {
				t.Errorf("%s/step %d: text %q, want it to contain %q", tt.name, step, text, tt.text)
			}
			if tt.damaged == 0 && tt.text == nil && len(text) != 0 {
				t.Errorf("%s/step %d: unexpected text %q", tt.name, step, text)
			}
		}
	}
}

func TestTypeString(t *testing.T) {
	tests := []struct {
		t    Type
		want string
	}{{TypeHello, "HELLO"}, {TypeAck, "ACK"}, {0x99, "type(0x99)"}}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("%d: %q, want %q", tt.t, got, tt.want)
		}
	}
}

// FuzzDecode checks that the decoder never panics or loses the stream: any
// frames it reports re-encode to bytes present in the input, and a valid
// frame appended after arbitrary noise is always found.
func FuzzDecode(f *testing.F) {
	h, _ := Encode(Frame{Type: TypeHello, Seq: 1, Payload: []byte(`{"state":"waiting-for-config"}`)})
	a, _ := Encode(Frame{Type: TypeAck, Seq: 2})
	f.Add([]byte("plain kernel text\r\n"), uint8(1))
	f.Add(h, uint8(3))
	f.Add(append(append([]byte("noise\xF1HF"), h...), a...), uint8(7))
	f.Add(append(append([]byte(nil), Magic[:]...), 1, 0x18, 0, 0, 0x04, 0x00), uint8(2))
	f.Add(append(h[:9:9], h...), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		st := int(step%64) + 1
		_, frames, _ := decodeAll(data, st)
		for _, fr := range frames {
			enc, err := Encode(fr)
			if err != nil {
				t.Fatalf("decoded frame does not re-encode: %v", err)
			}
			if !bytes.Contains(data, enc) {
				t.Fatalf("decoded frame %+v not in input", fr)
			}
		}
		marker := Frame{Type: TypeText, Seq: 0xBEEF, Payload: []byte("marker")}
		in := append(append([]byte(nil), data...), mustEncode(t, marker)...)
		_, frames, _ = decodeAll(in, st)
		found := false
		for _, fr := range frames {
			if fr.Seq == marker.Seq && bytes.Equal(fr.Payload, marker.Payload) {
				found = true
			}
		}
		// Noise ending in an incomplete frame header can claim the marker's
		// bytes as its payload; the decoder still resynchronises, so the
		// marker is found unless the noise's pending frame is longer than
		// what follows it. Append padding to flush such a frame.
		if !found {
			in = append(in, make([]byte, MaxFrame)...)
			in = append(in, mustEncode(t, marker)...)
			_, frames, _ = decodeAll(in, st)
			for _, fr := range frames {
				if fr.Seq == marker.Seq {
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("marker frame lost after %d bytes of noise", len(data))
		}
	})
}

// rwBuffer is an io.ReadWriter whose reads never return data.
type rwBuffer struct{ bytes.Buffer }

func (b *rwBuffer) Read([]byte) (int, error) { return 0, io.EOF }

// TestWriteTextNeverFrames writes a whole encoded frame as text, as a
// child process or a worker-supplied field could: the other side's
// decoder sees text only.
func TestWriteTextNeverFrames(t *testing.T) {
	forged, err := Encode(Frame{Type: TypeDone, Seq: 3, Payload: []byte(`{"id":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	var wire rwBuffer
	c := NewConn(&wire, Options{})
	text := append([]byte("log line "), forged...)
	if n, err := c.WriteText(text); n != len(text) || err != nil {
		t.Fatalf("WriteText: %d, %v", n, err)
	}
	var d Decoder
	d.Feed(wire.Bytes())
	var got []byte
	for {
		ev, ok := d.Next()
		if !ok {
			break
		}
		if ev.Kind == EventFrame {
			t.Fatalf("text decoded as a %s frame", ev.Frame.Type)
		}
		got = append(got, ev.Text...)
	}
	if !bytes.HasPrefix(got, []byte(`log line \xf1HF`)) {
		t.Errorf("text on the wire: %q", got)
	}
}
