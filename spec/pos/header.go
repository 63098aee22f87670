package pos

import (
	"encoding/hex"
	"fmt"
	"reflect"

	"github.com/moov-io/iso8583/field"
	"github.com/shoudan/shoudan/spec"
)

// Head is what travels before the bitmap: TPDU (5 bytes), the 6-byte header (12 BCD digits) and
// the MTI.
type Head struct {
	TPDU   [5]byte
	Header [6]byte
	MTI    string
}

// Reply returns the head of a response to h: destination and source NII swapped, the header
// echoed with digit 6 (processing requirement) set to req, and the response MTI.
func (h Head) Reply(mti string, req byte) Head {
	r := Head{MTI: mti}
	r.TPDU = [5]byte{h.TPDU[0], h.TPDU[3], h.TPDU[4], h.TPDU[1], h.TPDU[2]}
	r.Header = h.Header
	r.Header[2] = r.Header[2]&0xF0 | req&0x0F
	return r
}

// HeaderDigits is the header as its 12 digits.
func (h Head) HeaderDigits() string { return hex.EncodeToString(h.Header[:]) }

// TestMode reports header digit 5 (terminal status) = 1.
func (h Head) TestMode() bool { return h.Header[2]>>4 == 1 }

// Processing is header digit 6.
func (h Head) Processing() byte { return h.Header[2] & 0x0F }

// Header processing requirements (digit 6) the switch sets.
const (
	ProcNone   byte = 0
	ProcSignOn byte = 3
)

// HeadField is field 0 of the terminal dialect: it packs and unpacks TPDU + header + MTI, while
// String/Bytes expose only the MTI so that Message.GetMTI and the connection library's
// request/response detection keep working. Because field 0 is unpacked first it receives the
// whole frame; Raw keeps it for MAC verification over the bytes exactly as received.
type HeadField struct {
	spec *field.Spec
	Head Head
	Raw  []byte
}

var _ field.Field = (*HeadField)(nil)

func NewHeadField() *HeadField {
	return &HeadField{spec: &field.Spec{Length: 4, Description: "TPDU + header + MTI", Enc: spec.BCDRight, Pref: spec.Fixed}}
}

func (f *HeadField) NewInstance() field.Field { return &HeadField{spec: f.spec} }
func (f *HeadField) Spec() *field.Spec        { return f.spec }
func (f *HeadField) SetSpec(s *field.Spec)    { f.spec = s }
func (f *HeadField) String() (string, error)  { return f.Head.MTI, nil }
func (f *HeadField) Bytes() ([]byte, error)   { return []byte(f.Head.MTI), nil }
func (f *HeadField) SetBytes(b []byte) error  { f.Head.MTI = string(b); return nil }
func (f *HeadField) SetData(v any) error      { return f.Marshal(v) }

func (f *HeadField) Pack() ([]byte, error) {
	if len(f.Head.MTI) != 4 {
		return nil, &spec.ValueError{Expected: "a 4-digit MTI", Found: fmt.Sprintf("%q", f.Head.MTI)}
	}
	mti, err := spec.BCDRight.Encode([]byte(f.Head.MTI))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 13)
	out = append(out, f.Head.TPDU[:]...)
	out = append(out, f.Head.Header[:]...)
	return append(out, mti...), nil
}

func (f *HeadField) Unpack(d []byte) (int, error) {
	if len(d) < 13 {
		return 0, &spec.ValueError{Pos: len(d), Expected: "13 bytes of TPDU, header and MTI", Found: fmt.Sprintf("%d bytes", len(d))}
	}
	if d[0] != 0x60 {
		return 0, &spec.ValueError{Pos: 0, Expected: "TPDU id 60", Found: fmt.Sprintf("%02X", d[0])}
	}
	for i := 5; i < 11; i++ {
		if d[i]>>4 > 9 || d[i]&0x0F > 9 {
			return 0, &spec.ValueError{Pos: i, Expected: "a BCD header digit", Found: fmt.Sprintf("byte %02X", d[i])}
		}
	}
	mti, _, err := spec.BCDRight.Decode(d[11:13], 4)
	if e, ok := err.(*spec.ValueError); ok {
		return 0, &spec.ValueError{Pos: 11 + e.Pos, Expected: "a BCD MTI", Found: e.Found}
	}
	f.Raw = d
	copy(f.Head.TPDU[:], d[:5])
	copy(f.Head.Header[:], d[5:11])
	f.Head.MTI = string(mti)
	return 13, nil
}

// Marshal accepts a Head, *Head or an MTI string.
func (f *HeadField) Marshal(v any) error {
	switch x := v.(type) {
	case Head:
		f.Head = x
	case *Head:
		if x != nil {
			f.Head = *x
		}
	case string:
		f.Head.MTI = x
	default:
		return fmt.Errorf("field 0: unsupported type %T", v)
	}
	return nil
}

// Unmarshal fills a *Head, *string or a reflect.Value of either.
func (f *HeadField) Unmarshal(v any) error {
	switch x := v.(type) {
	case *Head:
		*x = f.Head
	case *string:
		*x = f.Head.MTI
	case reflect.Value:
		switch {
		case x.Type() == reflect.TypeOf(Head{}):
			x.Set(reflect.ValueOf(f.Head))
		case x.Kind() == reflect.String:
			x.SetString(f.Head.MTI)
		default:
			return fmt.Errorf("field 0: unsupported type %s", x.Type())
		}
	default:
		return fmt.Errorf("field 0: unsupported type %T", v)
	}
	return nil
}

// MarshalJSON omits Raw: json.Marshal of a message must never dump the frame (PAN, track, PIN).
func (f *HeadField) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`{"tpdu":%q,"header":%q,"mti":%q}`, hex.EncodeToString(f.Head.TPDU[:]), f.Head.HeaderDigits(), f.Head.MTI)), nil
}
