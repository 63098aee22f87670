package pos

import (
	"errors"
	"testing"

	"github.com/shoudan/shoudan/spec"
	"github.com/stretchr/testify/require"
)

// a minimal valid echo request: 11 41 42 60
func echoFrame(t testing.TB) []byte {
	return hx(t, tpduReq, hdr, "08 20", "00 20 00 00 00 C0 00 10", "000002", tid, mid, "0011 000000023010")
}

func TestDecodeErrorsNameFieldOffsetExpectedFound(t *testing.T) {
	ok := echoFrame(t)
	_, err := Decode(ok)
	require.NoError(t, err)

	// offsets: TPDU 0-4, header 5-10, MTI 11-12, bitmap 13-20, F11 21-23, F41 24-31, F42 32-46,
	// F60 prefix 47-48, F60 body 49-54
	cases := []struct {
		name   string
		frame  []byte
		field  int
		offset int
		want   string
	}{
		{"trailing bytes", append(append([]byte{}, ok...), 0x00, 0x01), -1, len(ok), "2 trailing bytes"},
		{"truncated in field 60", ok[:len(ok)-2], 60, len(ok) - 2, "frame ends after"},
		{"too short for a bitmap", ok[:15], -1, 15, "at least 21 bytes"},
		{"bit 1 set", hx(t, tpduReq, hdr, "08 20", "80 20 00 00 00 C0 00 10", "000002", tid, mid, "0011 000000023010"), 1, 13, "bit 1 set"},
		{"undefined bit 5", hx(t, tpduReq, hdr, "08 20", "08 20 00 00 00 C0 00 10", "000002", tid, mid, "0011 000000023010"), 5, 13, "bit 5 set"},
		{"bad BCD nibble in STAN", hx(t, tpduReq, hdr, "08 20", "00 20 00 00 00 C0 00 10", "00A002", tid, mid, "0011 000000023010"), 11, 22, "nibble A"},
		{"bad pad nibble in 60", hx(t, tpduReq, hdr, "08 20", "00 20 00 00 00 C0 00 10", "000002", tid, mid, "0011 000000023015"), 60, 54, "nibble 5"},
		{"LLL length over the maximum", hx(t, tpduReq, hdr, "08 20", "00 20 00 00 00 C0 00 10", "000002", tid, mid, "0018 000000023010"), 60, 47, "length 18"},
		{"bad BCD in a length prefix", hx(t, tpduReq, hdr, "08 20", "00 20 00 00 00 C0 00 10", "000002", tid, mid, "00A1 000000023010"), 60, 48, "byte A1"},
		{"not a TPDU", append([]byte{0x61}, ok[1:]...), 0, 0, "61"},
		{"bad MTI", hx(t, tpduReq, hdr, "0F 20", "00 20 00 00 00 C0 00 10", "000002", tid, mid, "0011 000000023010"), 0, 11, "nibble F"},
		{"control byte in an an field", hx(t, tpduReq, hdr, "02 10", "00 20 00 00 02 C0 00 10", "000002", "'0'", "01", tid, mid, "0011 000000023010"), 39, 25, "byte 01"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.frame)
			var fe *spec.FieldError
			require.True(t, errors.As(err, &fe), "want a FieldError, got %v", err)
			require.Equal(t, c.field, fe.Field, err.Error())
			require.Equal(t, c.offset, fe.Offset, err.Error())
			require.Contains(t, err.Error(), c.want)
			require.Contains(t, err.Error(), "expected")
		})
	}
}

func TestPadNibbleFAcceptedZeroWritten(t *testing.T) {
	// F2 with 19 digits padded with F by the terminal; F22 pad F
	f := hx(t, tpduReq, hdr, "02 00", "60 20 04 80 00 C0 00 00", "19 6222021234567890123 F", "310000", "000127", "051F", "00", tid, mid)
	fr, err := Decode(f)
	require.NoError(t, err)
	pan, _ := fr.Msg.GetString(2)
	require.Equal(t, "6222021234567890123", pan)
	em, _ := fr.Msg.GetString(22)
	require.Equal(t, "051", em)
	out, err := Encode(fr.Msg, nil)
	require.NoError(t, err)
	require.NotEqual(t, f, out, "re-pack writes 0 pads, so MACs must use the received bytes")
	require.Equal(t, byte(0x30), out[31]) // last PAN byte (offsets 22..31): 3 then pad 0
}

func TestReadFrameRefusesLengthsOutOfRange(t *testing.T) {
	raw, err := ReadFrame(bytesReader(WithLen(echoFrame(t))))
	require.NoError(t, err)
	require.Equal(t, echoFrame(t), raw)

	_, err = ReadFrame(bytesReader([]byte{0x00, 0x05, 1, 2, 3, 4, 5}))
	var le *ErrFrameLength
	require.ErrorAs(t, err, &le)
	_, err = ReadFrame(bytesReader([]byte{0x08, 0x01}))
	require.ErrorAs(t, err, &le)
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errors.New("EOF")
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func bytesReader(b []byte) *sliceReader { return &sliceReader{b} }
