package upstream

import (
	"fmt"
	"io"
)

// ReadFrame reads one frame (4 ASCII length digits, then the message) and returns the message
// bytes. A length out of range is an error: the stream cannot be trusted after it.
func ReadFrame(r io.Reader) ([]byte, error) {
	n, err := ReadLen(r)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("upstream frame of %d bytes: %w", n, err)
	}
	return b, nil
}

// Frame encodes m with its length in front, ready for one Write.
func Frame(m *Message) ([]byte, error) {
	msg, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	b, err := Dialect.Pack(msg)
	if err != nil {
		return nil, err
	}
	if len(b) > 9999 {
		return nil, fmt.Errorf("upstream frame of %d bytes: at most 9999", len(b))
	}
	return append([]byte(fmt.Sprintf("%04d", len(b))), b...), nil
}
