package pos

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/frames from the golden tests")

const framesDir = "../../testdata/frames"

// seedFrames are the golden frames, written to testdata/frames as hex (with LEN) so the fuzzer,
// the decode tool and QA start from real messages.
func seedFrames(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"purchase-chip-pin.hex": hx(t, tpduReq, hdr, "02 00", "70 24 06 C0 00 C0 9A 31",
			"19 6222021234567890123 0", "000000", "000000012345", "000123", "2512", "0510", "0001", "00", "06",
			tid, mid, "'156'", "0102030405060708", "2600000000000000", "0011 9F26080102030405060708", device,
			"0013 22000001000500", "'1A2B3C4D'"),
		"purchase-swipe-track2.hex": hx(t, tpduReq, hdr, "02 00", "30 20 44 80 20 C0 80 30",
			"000000", "000000100000", "000124", "5812", "0220", "00", "37 6222021234567890123D25122010000012345 0",
			tid, mid, "'156'", device, "0013 22000001000200"),
		"signon.hex": hx(t, tpduReq, hdr, "08 00", "00 20 00 00 00 C0 00 12", "000001", tid, mid, "0011 000000000030", "0003 '01 '"),
		"echo.hex":   echoFrame(t),
		"status.hex": hx(t, tpduReq, hdr, "02 00", "20 20 00 80 00 C0 00 39", "310000", "000128", "88", tid, mid, device, "0011 010000010000", "0012 000001000123", "'0A0B0C0D'"),
		"refund.hex": hx(t, tpduReq, hdr, "02 20", "70 20 04 80 08 C0 80 39", "16 6222021234567890", "200000", "000000005000", "000126", "0510", "00", "'112233445566'", tid, mid, "'156'", device, "0013 25000001000500", "0016 0000000000001121", "'0A0B0C0D'"),
		"settle.hex": hx(t, tpduReq, hdr, "05 00", "00 20 00 00 00 C1 80 12", "000010", tid, mid, "0062 00000001234500100000000500000100000000000000000000000000000000", "'156'", "0011 000000022010", "0003 '01 '"),
		"upload.hex": hx(t, tpduReq, hdr, "03 20", "00 20 00 00 00 C1 00 10", "000011", tid, mid, "0042 010000012306222021234567890123000000012345", "0011 000000022010"),
		"reversal.hex": hx(t, tpduReq, hdr, "04 00", "70 24 06 80 06 C0 82 11", "19 6222021234567890123 0", "000000", "000000012345", "000123", "2512", "0510", "0001", "00",
			"'A1B2C3'", "'98'", tid, mid, "'156'", "0011 9F26080102030405060708", "0013 22000001000500", "'0A0B0C0D'"),
	}
}

func TestSeedFrames(t *testing.T) {
	if *update {
		require.NoError(t, os.MkdirAll(framesDir, 0o755))
		for name, f := range seedFrames(t) {
			require.NoError(t, os.WriteFile(filepath.Join(framesDir, name), []byte(hex.EncodeToString(WithLen(f))+"\n"), 0o644))
		}
	}
	files, _ := filepath.Glob(filepath.Join(framesDir, "*.hex"))
	require.NotEmpty(t, files)
	for _, p := range files {
		raw := readHexFrame(t, p)
		_, err := Decode(raw)
		require.NoError(t, err, p)
	}
}

func readHexFrame(t testing.TB, path string) []byte {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	require.NoError(t, err, path)
	return raw[2:] // drop LEN
}

// FuzzDecode: any bytes either decode or fail with a FieldError, never panic; a frame that decodes
// identifies, describes and re-encodes, and the re-encoded frame decodes to the same bytes again.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(framesDir, "*.hex"))
	for _, p := range files {
		f.Add(readHexFrame(f, p))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fr, err := Decode(raw)
		if err != nil {
			if !strings.Contains(err.Error(), "expected") {
				t.Fatalf("error without expected/found: %v", err)
			}
			return
		}
		_, _ = Identify(fr)
		_ = Describe(fr)
		_ = fr.MAB()
		out, err := Encode(fr.Msg, nil)
		if err != nil {
			t.Fatalf("decoded frame does not re-encode: %v", err)
		}
		if len(out) != len(raw) {
			t.Fatalf("re-encoded length %d, received %d", len(out), len(raw))
		}
		fr2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		out2, err := Encode(fr2.Msg, nil)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encode is not stable: %v", err)
		}
	})
}
