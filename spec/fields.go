package spec

import (
	"fmt"

	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/padding"
	"github.com/moov-io/iso8583/prefix"
)

// Kind is a field's ISO 8583 attribute class.
type Kind uint8

const (
	N   Kind = iota // numeric digits
	Z               // track data: digits and the separator
	AN              // printable ASCII
	ANS             // ASCII and national text (GBK on CUP terminals)
	B               // binary
)

func (k Kind) String() string {
	return [...]string{"n", "z", "an", "ans", "b"}[k]
}

// Secrecy says how a field is shown in logs and tools.
type Secrecy uint8

const (
	Clear  Secrecy = iota
	PAN            // first 6 + last 4
	Hidden         // never shown: PIN blocks, tracks, ICC data, keys, CVV-bearing data
)

// FieldDef is one row of a dialect's field table. The table is the single source of truth for
// the moov field spec, the layout walker and masking.
type FieldDef struct {
	ID      int
	Name    string
	Kind    Kind
	Length  int   // fixed length, or the maximum for a variable field (digits for n/z, bytes otherwise)
	Var     int   // 0 fixed, 2 LLVAR, 3 LLLVAR
	Align   Align // for odd-length n/z
	Numeric bool  // carried as an int64 (amounts)
	Secrecy Secrecy
	// Wire selects the encoding family: BCDWire for packed digits (the terminal dialect),
	// ASCIIWire for character digits (the upstream dialect).
	Wire Wire
}

// Wire is the encoding family of a dialect.
type Wire uint8

const (
	BCDWire Wire = iota
	ASCIIWire
)

// Format renders the field's attribute string as the specs write it, e.g. "n..19 LLVAR".
func (d FieldDef) Format() string {
	switch d.Var {
	case 2:
		return fmt.Sprintf("%s..%d LLVAR", d.Kind, d.Length)
	case 3:
		return fmt.Sprintf("%s..%d LLLVAR", d.Kind, d.Length)
	}
	return fmt.Sprintf("%s%d", d.Kind, d.Length)
}

// prefixSize is the length prefix's size on the wire.
func (d FieldDef) prefixSize() int {
	if d.Wire == ASCIIWire {
		return d.Var
	}
	return Prefix{d.Var}.Size()
}

// bodySize is the size on the wire of a value of n units.
func (d FieldDef) bodySize(n int) int {
	if d.Wire == BCDWire && (d.Kind == N || d.Kind == Z) {
		return (n + 1) / 2
	}
	return n
}

func (d FieldDef) encoder() encoding.Encoder {
	switch {
	case d.Wire == ASCIIWire && d.Kind == B:
		return Binary
	case d.Wire == ASCIIWire && d.Kind == ANS:
		return Text
	case d.Wire == ASCIIWire && d.Kind == N:
		return ASCIIDigits
	case d.Wire == ASCIIWire:
		return ASCII
	case d.Kind == Z:
		return BCD{Align: d.Align, Track: true}
	case d.Kind == N:
		return BCD{Align: d.Align}
	case d.Kind == AN:
		return ASCII
	}
	return Binary // ans and b: any byte
}

func (d FieldDef) prefixer() prefix.Prefixer {
	if d.Wire == ASCIIWire {
		return ASCIIPrefix{d.Var}
	}
	return Prefix{d.Var}
}

// Field builds the moov-io/iso8583 field prototype for this row.
func (d FieldDef) Field() field.Field {
	s := &field.Spec{Length: d.Length, Description: d.Name, Enc: d.encoder(), Pref: d.prefixer()}
	switch {
	case d.Numeric:
		s.Pad = padding.Left('0')
		return field.NewNumeric(s)
	case d.Kind == B:
		return field.NewBinary(s)
	}
	return field.NewString(s)
}

// ASCIIPrefix is a decimal-character length prefix (LL = 2 characters, LLL = 3); Digits 0 = fixed.
type ASCIIPrefix struct{ Digits int }

func (p ASCIIPrefix) EncodeLength(maxLen, length int) ([]byte, error) {
	if p.Digits == 0 {
		if length != maxLen {
			return nil, &ValueError{Expected: fmt.Sprintf("exactly %d", maxLen), Found: fmt.Sprintf("length %d", length)}
		}
		return nil, nil
	}
	if length > maxLen {
		return nil, &ValueError{Expected: fmt.Sprintf("at most %d", maxLen), Found: fmt.Sprintf("length %d", length)}
	}
	out := make([]byte, p.Digits)
	for i := p.Digits - 1; i >= 0; i-- {
		out[i] = '0' + byte(length%10)
		length /= 10
	}
	return out, nil
}

func (p ASCIIPrefix) DecodeLength(maxLen int, data []byte) (int, int, error) {
	if p.Digits == 0 {
		return maxLen, 0, nil
	}
	if len(data) < p.Digits {
		return 0, 0, &ValueError{Pos: len(data), Expected: fmt.Sprintf("a %d-digit length prefix", p.Digits), Found: fmt.Sprintf("%d bytes", len(data))}
	}
	v := 0
	for i := 0; i < p.Digits; i++ {
		c := data[i]
		if c < '0' || c > '9' {
			return 0, 0, &ValueError{Pos: i, Expected: "a decimal length digit", Found: fmt.Sprintf("byte %02X", c)}
		}
		v = v*10 + int(c-'0')
	}
	if v > maxLen {
		return 0, 0, &ValueError{Expected: fmt.Sprintf("length at most %d", maxLen), Found: fmt.Sprintf("length %d", v)}
	}
	return v, p.Digits, nil
}

func (p ASCIIPrefix) Inspect() string { return fmt.Sprintf("ASCII.%d", p.Digits) }
