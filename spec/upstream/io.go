package upstream

import (
	"fmt"
	"io"

	"github.com/moov-io/iso8583"
)

// Reader is an iso8583-connection MessageReader that rejects trailing bytes and reports errors
// with field and offset (the library's own reader accepts trailing garbage).
type Reader struct{}

func (Reader) ReadMessage(r io.Reader) (*iso8583.Message, error) {
	n, err := ReadLen(r)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("upstream frame of %d bytes: %w", n, err)
	}
	m, _, err := Dialect.Unpack(b)
	return m, err
}

// Writer writes length and message in one Write.
type Writer struct{}

func (Writer) WriteMessage(w io.Writer, m *iso8583.Message) error {
	b, err := Dialect.Pack(m)
	if err != nil {
		return err
	}
	_, err = w.Write(append([]byte(fmt.Sprintf("%04d", len(b))), b...))
	return err
}
