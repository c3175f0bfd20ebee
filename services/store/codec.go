package store

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Structured records (config, manifest frames, index, retention records) are
// CBOR (RFC 8949) in core deterministic encoding, with integer map keys and
// times as int64 Unix nanoseconds. Object keys and chunk lists are byte
// strings, so invalid UTF-8 keys round-trip exactly. Decoding is bounded so
// a damaged or hostile record cannot make the decoder allocate without limit.

// codec holds the immutable CBOR modes. It is built once per Store.
type codec struct {
	enc cbor.EncMode
	dec cbor.DecMode
}

func newCodec() (codec, error) {
	enc, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		return codec{}, fmt.Errorf("cbor enc mode: %w", err)
	}
	dec, err := cbor.DecOptions{
		MaxNestedLevels:  16,
		MaxArrayElements: 1 << 20,
		MaxMapPairs:      1 << 16,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		UTF8:             cbor.UTF8DecodeInvalid, // hostile sources send any bytes
	}.DecMode()
	if err != nil {
		return codec{}, fmt.Errorf("cbor dec mode: %w", err)
	}
	return codec{enc: enc, dec: dec}, nil
}

func (c codec) marshal(v any) ([]byte, error) {
	b, err := c.enc.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return b, nil
}

func (c codec) unmarshal(b []byte, v any) error {
	if err := c.dec.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode: %v: %w", err, ErrCorrupt)
	}
	return nil
}
