package pos

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/moov-io/iso8583"
	"github.com/shoudan/shoudan/spec"
)

// Frame is a decoded terminal message together with the bytes it came from.
type Frame struct {
	Msg    *iso8583.Message
	Layout *spec.Layout
	Raw    []byte // everything after LEN, exactly as received
}

// Decode walks and decodes the bytes after LEN. Errors are *spec.FieldError.
func Decode(raw []byte) (*Frame, error) {
	m, l, err := Dialect.Unpack(raw)
	if err != nil {
		return nil, err
	}
	return &Frame{Msg: m, Layout: l, Raw: raw}, nil
}

// Head returns the frame's TPDU, header and MTI.
func (f *Frame) Head() Head { return f.Msg.GetField(0).(*HeadField).Head }

// MAB is the MAC input: the bytes as received from the MTI through the end of the last field
// before 64 (protocol.md §6).
func (f *Frame) MAB() []byte {
	if f.Layout.Has(64) {
		return f.Raw[11:f.Layout.Field(64).Start]
	}
	return f.Raw[11:]
}

// MAC returns field 64 as received, or nil.
func (f *Frame) MAC() []byte {
	if !f.Layout.Has(64) {
		return nil
	}
	return f.Raw[f.Layout.Field(64).End-8 : f.Layout.Field(64).End]
}

// Has reports whether field id is present.
func (f *Frame) Has(id int) bool { return f.Layout.Has(id) }

// MACFunc computes field 64 over a MAB.
type MACFunc func(mab []byte) ([8]byte, error)

// Encode packs a message. When mac is not nil, field 64 is added and computed over the packed
// bytes from the MTI through the last field before it.
func Encode(m *iso8583.Message, mac MACFunc) ([]byte, error) {
	if mac != nil {
		if err := m.BinaryField(64, make([]byte, 8)); err != nil {
			return nil, err
		}
	}
	b, err := Dialect.Pack(m)
	if err != nil {
		return nil, err
	}
	if mac != nil {
		v, err := mac(b[11 : len(b)-8])
		if err != nil {
			return nil, err
		}
		copy(b[len(b)-8:], v[:])
		_ = m.BinaryField(64, v[:])
	}
	return b, nil
}

// ErrFrameLength is returned by ReadFrame for a LEN outside MinFrame..MaxFrame: the stream can no
// longer be trusted and the connection must be closed.
type ErrFrameLength struct{ Len int }

func (e *ErrFrameLength) Error() string {
	return fmt.Sprintf("frame length: expected %d..%d, found %d", MinFrame, MaxFrame, e.Len)
}

// ReadFrame reads LEN and the bytes it counts.
func ReadFrame(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n < MinFrame || n > MaxFrame {
		return nil, &ErrFrameLength{n}
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("frame of %d bytes: %w", n, err)
	}
	return b, nil
}

// WithLen prefixes a frame with its 2-byte LEN, ready for one Write.
func WithLen(b []byte) []byte {
	out := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	copy(out[2:], b)
	return out
}
