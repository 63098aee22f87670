// Package spec holds the byte-level building blocks shared by shoudan's message dialects: fast,
// strict encoders and length prefixers that plug into github.com/moov-io/iso8583, the field table
// type (specs as data), the frame layout walker that finds every field's offset, and masking.
//
// The library's own BCD encoder rebuilds its lookup tables on every call (about 75 % of pack CPU,
// see shared/reference/moov-notes.md) and accepts any nibble; the encoders here are table-free,
// reject bad nibbles with the position and value found, and accept a pad nibble of 0 or F while
// always writing 0, as protocol.md §2 requires.
package spec

import (
	"fmt"

	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/prefix"
)

// ValueError is what an encoder or prefixer returns: Pos is the byte offset inside the field's
// wire form where the problem was found. The codec wraps it in a FieldError that adds the field
// number and the offset of the field within the frame.
type ValueError struct {
	Pos      int
	Expected string
	Found    string
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("at byte %d of the field: expected %s, found %s", e.Pos, e.Expected, e.Found)
}

// Align says where the pad nibble of an odd-length BCD value goes.
type Align uint8

const (
	// Right-aligned: `001` → `00 01` (pad nibble first).
	Right Align = iota
	// Left-aligned: `071` → `07 10` (pad nibble last).
	Left
)

// BCD is an encoding.Encoder for packed decimal digits. With Track set the nibble D is also
// allowed and stands for the track separator '='.
type BCD struct {
	Align Align
	Track bool
}

var (
	BCDRight encoding.Encoder = BCD{Align: Right}
	BCDLeft  encoding.Encoder = BCD{Align: Left}
	TrackBCD encoding.Encoder = BCD{Align: Left, Track: true}
)

func (e BCD) nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case e.Track && (c == '=' || c == 'D' || c == 'd'):
		return 0xD, true
	}
	return 0, false
}

// Encode packs ASCII digits into BCD, writing 0 as the pad nibble.
func (e BCD) Encode(src []byte) ([]byte, error) {
	n := len(src)
	out := make([]byte, (n+1)/2)
	pad := 0
	if n%2 == 1 && e.Align == Right {
		pad = 1
	}
	for i := 0; i < n; i++ {
		v, ok := e.nibble(src[i])
		if !ok {
			return nil, &ValueError{Pos: i, Expected: e.what(), Found: fmt.Sprintf("character %q", src[i])}
		}
		j := i + pad
		if j%2 == 0 {
			out[j/2] = v << 4
		} else {
			out[j/2] |= v
		}
	}
	return out, nil
}

func (e BCD) what() string {
	if e.Track {
		return "a track digit 0-9 or separator D"
	}
	return "a BCD digit 0-9"
}

// Decode reads length digits ((length+1)/2 bytes). A pad nibble must be 0 or F.
func (e BCD) Decode(src []byte, length int) ([]byte, int, error) {
	if length < 0 {
		return nil, 0, &ValueError{Expected: "a non-negative length", Found: fmt.Sprint(length)}
	}
	nb := (length + 1) / 2
	if len(src) < nb {
		return nil, 0, &ValueError{Pos: len(src), Expected: fmt.Sprintf("%d bytes for %d digits", nb, length), Found: fmt.Sprintf("%d bytes", len(src))}
	}
	out := make([]byte, length)
	odd := length%2 == 1
	k := 0
	for i := 0; i < nb; i++ {
		b := src[i]
		hi, lo := b>>4, b&0x0F
		padHi := odd && e.Align == Right && i == 0
		padLo := odd && e.Align == Left && i == nb-1
		if padHi {
			if hi != 0 && hi != 0xF {
				return nil, 0, &ValueError{Pos: i, Expected: "pad nibble 0 or F", Found: fmt.Sprintf("nibble %X", hi)}
			}
		} else {
			c, err := e.digit(hi, i)
			if err != nil {
				return nil, 0, err
			}
			out[k] = c
			k++
		}
		if padLo {
			if lo != 0 && lo != 0xF {
				return nil, 0, &ValueError{Pos: i, Expected: "pad nibble 0 or F", Found: fmt.Sprintf("nibble %X", lo)}
			}
		} else {
			c, err := e.digit(lo, i)
			if err != nil {
				return nil, 0, err
			}
			out[k] = c
			k++
		}
	}
	return out, nb, nil
}

func (e BCD) digit(n byte, pos int) (byte, error) {
	if n <= 9 {
		return '0' + n, nil
	}
	if e.Track && n == 0xD {
		return '=', nil
	}
	return 0, &ValueError{Pos: pos, Expected: e.what(), Found: fmt.Sprintf("nibble %X", n)}
}

// Bytes copies exactly length bytes; Printable restricts them to printable ASCII (an fields),
// otherwise any byte passes (ans fields may carry GBK text, b fields are binary).
type Bytes struct {
	Printable bool
	Digits    bool // decimal characters only (n fields of a character dialect)
}

var (
	ASCIIDigits encoding.Encoder = Bytes{Digits: true}
	ASCII       encoding.Encoder = Bytes{Printable: true}
	Text        encoding.Encoder = Bytes{}
	Binary      encoding.Encoder = Bytes{}
)

func (e Bytes) check(b []byte) error {
	for i, c := range b {
		switch {
		case e.Digits && (c < '0' || c > '9'):
			return &ValueError{Pos: i, Expected: "a decimal digit", Found: fmt.Sprintf("byte %02X", c)}
		case e.Printable && (c < 0x20 || c > 0x7E):
			return &ValueError{Pos: i, Expected: "printable ASCII", Found: fmt.Sprintf("byte %02X", c)}
		}
	}
	return nil
}

func (e Bytes) Encode(src []byte) ([]byte, error) {
	if err := e.check(src); err != nil {
		return nil, err
	}
	out := make([]byte, len(src))
	copy(out, src)
	return out, nil
}

func (e Bytes) Decode(src []byte, length int) ([]byte, int, error) {
	if length < 0 || len(src) < length {
		return nil, 0, &ValueError{Pos: len(src), Expected: fmt.Sprintf("%d bytes", length), Found: fmt.Sprintf("%d bytes", len(src))}
	}
	if err := e.check(src[:length]); err != nil {
		return nil, 0, err
	}
	out := make([]byte, length)
	copy(out, src)
	return out, length, nil
}

// Prefix is a BCD length prefixer: Digits 0 = fixed length, 2 = LL (1 byte), 3 = LLL (2 bytes).
type Prefix struct{ Digits int }

var (
	Fixed prefix.Prefixer = Prefix{0}
	LL    prefix.Prefixer = Prefix{2}
	LLL   prefix.Prefixer = Prefix{3}
)

// Size is the prefix's length on the wire in bytes.
func (p Prefix) Size() int { return (p.Digits + 1) / 2 }

func (p Prefix) EncodeLength(maxLen, length int) ([]byte, error) {
	if p.Digits == 0 {
		if length != maxLen {
			return nil, &ValueError{Expected: fmt.Sprintf("exactly %d", maxLen), Found: fmt.Sprintf("length %d", length)}
		}
		return nil, nil
	}
	if length > maxLen {
		return nil, &ValueError{Expected: fmt.Sprintf("at most %d", maxLen), Found: fmt.Sprintf("length %d", length)}
	}
	if p.Digits == 2 {
		return []byte{byte(length/10)<<4 | byte(length%10)}, nil
	}
	return []byte{byte(length / 100), byte(length/10%10)<<4 | byte(length%10)}, nil
}

func (p Prefix) DecodeLength(maxLen int, data []byte) (int, int, error) {
	if p.Digits == 0 {
		return maxLen, 0, nil
	}
	n := p.Size()
	if len(data) < n {
		return 0, 0, &ValueError{Pos: len(data), Expected: fmt.Sprintf("a %d-byte BCD length prefix", n), Found: fmt.Sprintf("%d bytes", len(data))}
	}
	v := 0
	for i := 0; i < n; i++ {
		hi, lo := data[i]>>4, data[i]&0x0F
		if hi > 9 || lo > 9 {
			return 0, 0, &ValueError{Pos: i, Expected: "BCD length digits", Found: fmt.Sprintf("byte %02X", data[i])}
		}
		v = v*100 + int(hi)*10 + int(lo)
	}
	if v > maxLen {
		return 0, 0, &ValueError{Expected: fmt.Sprintf("length at most %d", maxLen), Found: fmt.Sprintf("length %d", v)}
	}
	return v, n, nil
}

func (p Prefix) Inspect() string {
	switch p.Digits {
	case 2:
		return "BCD.LL"
	case 3:
		return "BCD.LLL"
	}
	return "BCD.Fixed"
}
