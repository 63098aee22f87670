package spec

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/moov-io/iso8583"
	moverr "github.com/moov-io/iso8583/errors"
	"github.com/moov-io/iso8583/field"
)

// FieldError is every decoding or encoding error of the codec: it names the field, the byte
// offset of the problem counted from the first byte after the 2-byte length (the TPDU for the
// terminal dialect), and what was expected versus found. It never carries field contents, so it
// is safe to log.
type FieldError struct {
	Field    int // 0 = header/MTI, 1 = bitmap, -1 = the frame as a whole
	Name     string
	Offset   int
	Expected string
	Found    string
}

func (e *FieldError) Error() string {
	where := "frame"
	switch {
	case e.Field == 0:
		where = "header/MTI"
	case e.Field == 1:
		where = "bitmap"
	case e.Field > 1:
		where = fmt.Sprintf("field %d (%s)", e.Field, e.Name)
	}
	return fmt.Sprintf("%s at offset %d: expected %s, found %s", where, e.Offset, e.Expected, e.Found)
}

// Span is where a field sits in a frame: [Start, End).
type Span struct{ Start, End int }

// Layout is the result of walking a frame: the span of every present field.
type Layout struct {
	Head    Span // header and MTI
	Bitmap  Span
	Present []int  // field numbers in wire order
	Spans   []Span // Spans[i] is where field Present[i] lies
}

// Field is where field id lies in the frame (zero when absent).
func (l *Layout) Field(id int) Span {
	for i, p := range l.Present {
		if p == id {
			return l.Spans[i]
		}
	}
	return Span{}
}

// Has reports whether field id is present.
func (l *Layout) Has(id int) bool { return id > 1 && l.Field(id).End > 0 }

// Dialect is a message format: its field table (as data), the size of what precedes the bitmap,
// and the moov-io/iso8583 spec built from them.
type Dialect struct {
	Name      string
	HeadSize  int  // bytes before the bitmap (header + MTI)
	Secondary bool // whether bit 1 may announce a secondary bitmap
	Defs      [129]*FieldDef
	Spec      *iso8583.MessageSpec
}

// NewDialect builds a dialect from its field table and a field-0 prototype.
func NewDialect(name string, headSize int, secondary bool, head field.Field, defs []FieldDef) *Dialect {
	d := &Dialect{Name: name, HeadSize: headSize, Secondary: secondary}
	bitmapLen := 8
	d.Spec = &iso8583.MessageSpec{Name: name, Fields: map[int]field.Field{
		0: head,
		1: field.NewBitmap(&field.Spec{Length: bitmapLen, Description: "Bitmap", Enc: Binary, Pref: Fixed, DisableAutoExpand: !secondary}),
	}}
	for i := range defs {
		def := defs[i]
		d.Defs[def.ID] = &def
		d.Spec.Fields[def.ID] = def.Field()
	}
	return d
}

// Def returns the table row of field id, or nil.
func (d *Dialect) Def(id int) *FieldDef {
	if id < 0 || id >= len(d.Defs) {
		return nil
	}
	return d.Defs[id]
}

func (d *Dialect) name(id int) string {
	if def := d.Def(id); def != nil {
		return def.Name
	}
	return "undefined"
}

// Walk finds every field of a frame without decoding values: it checks the bitmap, every length
// prefix, truncation, undefined bits and trailing bytes, and reports the first problem precisely.
func (d *Dialect) Walk(frame []byte) (*Layout, error) {
	l := &Layout{Present: make([]int, 0, 24), Spans: make([]Span, 0, 24)}
	if len(frame) < d.HeadSize+8 {
		return nil, &FieldError{Field: -1, Offset: len(frame), Expected: fmt.Sprintf("at least %d bytes (header, MTI and bitmap)", d.HeadSize+8), Found: fmt.Sprintf("%d bytes", len(frame))}
	}
	l.Head = Span{0, d.HeadSize}
	off := d.HeadSize
	bm := frame[off : off+8]
	words := 1
	if bm[0]&0x80 != 0 {
		if !d.Secondary {
			return nil, &FieldError{Field: 1, Offset: off, Expected: "bit 1 clear (no secondary bitmap in this dialect)", Found: "bit 1 set"}
		}
		if len(frame) < off+16 {
			return nil, &FieldError{Field: 1, Offset: len(frame), Expected: "an 8-byte secondary bitmap", Found: fmt.Sprintf("%d bytes", len(frame)-off-8)}
		}
		words = 2
		bm = frame[off : off+16]
	}
	l.Bitmap = Span{off, off + 8*words}
	off += 8 * words
	for id := 2; id <= 64*words; id++ {
		if id == 65 || bm[(id-1)/8]&(0x80>>((id-1)%8)) == 0 {
			continue
		}
		def := d.Def(id)
		if def == nil {
			return nil, &FieldError{Field: id, Name: "undefined", Offset: l.Bitmap.Start + (id-1)/8, Expected: "only bits of fields this dialect defines", Found: fmt.Sprintf("bit %d set", id)}
		}
		n, read, err := def.prefixer().DecodeLength(def.Length, frame[off:])
		if err != nil {
			return nil, d.wrap(id, off, err)
		}
		size := read + def.bodySize(n)
		if off+size > len(frame) {
			return nil, &FieldError{Field: id, Name: def.Name, Offset: len(frame), Expected: fmt.Sprintf("%d bytes for %s", size, def.Format()), Found: fmt.Sprintf("frame ends after %d", len(frame)-off)}
		}
		l.Present = append(l.Present, id)
		l.Spans = append(l.Spans, Span{off, off + size})
		off += size
	}
	if off != len(frame) {
		last := "the bitmap"
		if len(l.Present) > 0 {
			last = "field " + strconv.Itoa(l.Present[len(l.Present)-1])
		}
		return nil, &FieldError{Field: -1, Offset: off, Expected: "the frame to end after " + last, Found: fmt.Sprintf("%d trailing bytes", len(frame)-off)}
	}
	return l, nil
}

// wrap turns an encoder, prefixer or library error at field id (starting at offset start) into a
// FieldError.
func (d *Dialect) wrap(id, start int, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	var ve *ValueError
	if errors.As(err, &ve) {
		return &FieldError{Field: id, Name: d.name(id), Offset: start + ve.Pos, Expected: ve.Expected, Found: ve.Found}
	}
	return &FieldError{Field: id, Name: d.name(id), Offset: start, Expected: "a decodable value", Found: safeText(err)}
}

// safeText keeps library error text but never the raw message a moov error may carry.
func safeText(err error) string {
	var ue *moverr.UnpackError
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// Unpack walks and decodes a frame into a message of this dialect.
func (d *Dialect) Unpack(frame []byte) (*iso8583.Message, *Layout, error) {
	l, err := d.Walk(frame)
	if err != nil {
		return nil, nil, err
	}
	m := iso8583.NewMessage(d.Spec)
	if err := m.Unpack(frame); err != nil {
		id := -1
		var ue *moverr.UnpackError
		if errors.As(err, &ue) {
			id, _ = strconv.Atoi(ue.FieldID)
		}
		start := 0
		switch {
		case id == 1:
			start = l.Bitmap.Start
		case id > 1:
			start = l.Field(id).Start + d.Def(id).prefixSize()
		}
		return nil, nil, d.wrap(id, start, err)
	}
	return m, l, nil
}

// Pack packs a message, turning errors into FieldErrors (offsets are 0: a packed message has no
// input offsets).
func (d *Dialect) Pack(m *iso8583.Message) ([]byte, error) {
	b, err := m.Pack()
	if err != nil {
		var pe *moverr.PackError
		id := -1
		if errors.As(err, &pe) {
			// the library reports the field in the message text only; find it by trying each field
			id = d.failingField(m)
		}
		return nil, d.wrap(id, 0, err)
	}
	return b, nil
}

func (d *Dialect) failingField(m *iso8583.Message) int {
	fields := m.GetFields()
	ids := make([]int, 0, len(fields))
	for id := range fields {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		if _, err := fields[id].Pack(); err != nil {
			return id
		}
	}
	return -1
}
