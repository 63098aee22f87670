package upstream

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRoundTripWithSecondaryBitmap(t *testing.T) {
	in := &Message{MTI: "0420", PAN: "6222021234567890123", ProcCode: "000000", Amount: 12345, Transmission: "1121103015",
		Trace: "000001", MCC: "5812", EntryMode: "051", Cond: "00", Acquirer: "48020000", Forwarder: "48020000",
		RRN: "000000000001", RespCode: "98", TID: "12345678", MID: "898310058120001", Currency: "156",
		Private: Private60("4351", false), Original: Original90("0200", "000001", "1121103015", "48020000", "48020000")}
	m, err := Marshal(in)
	require.NoError(t, err)
	b, err := Dialect.Pack(m)
	require.NoError(t, err)
	require.Equal(t, "0420", string(b[:4]))
	require.Equal(t, byte(0x80), b[4]&0x80, "F90 needs the secondary bitmap")
	out, err := Unmarshal(b)
	require.NoError(t, err)
	require.Equal(t, in, out)
	require.Equal(t, Key(&Message{MTI: "0200", Trace: "000001", Transmission: "1121103015", Acquirer: "48020000"}), OriginalKey(out.Original))
	_, err = Unmarshal(append(b, '0'))
	require.ErrorContains(t, err, "trailing")
}
