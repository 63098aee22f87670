package posswitch

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/shoudan/shoudan/spec/upstream"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/stretchr/testify/require"
)

func sealTestSwitch(t *testing.T) *Switch {
	v, err := journal.NewVault(make([]byte, 32))
	require.NoError(t, err)
	return &Switch{Journal: &journal.Journal{Vault: v}, Log: slog.New(slog.DiscardHandler)}
}

// a purchase as upstreamRequest builds it, and its row as record + financial fill it in
func sealTestPurchase() (*upstream.Message, journal.ReversalRow) {
	up := &upstream.Message{MTI: "0200", PAN: "6222020000000000001", ProcCode: "000000", Amount: 12345, Transmission: "1202071500",
		Trace: "004711", LocalTime: "151500", LocalDate: "1202", Expiry: "2912", MCC: "5411", EntryMode: "051", CardSeq: "001",
		Cond: "00", Acquirer: "48020000", Forwarder: "48020000", Track2: "6222020000000000001=2912", TID: "90000001",
		MID: "898310058120001", MerchantName: "SHOUDAN DEMO STORE                      ", Currency: "156", PINBlock: []byte{1, 2, 3, 4, 5, 6, 7, 8},
		ICC: []byte{0x9f, 0x26}, Private: upstream.Private60("0000", false), RRN: "000000001234"}
	row := journal.ReversalRow{MTI: "0200", ProcCode: "000000", UpTrace: "004711", UpTime: "1202071500", RRN: "000000001234",
		TID: "90000001", MID: "898310058120001", MCC: "5411", EntryMode: "051", Amount: 12345}
	return reversalOf(up), row
}

func TestCompactSealedReversal(t *testing.T) {
	s := sealTestSwitch(t)
	rev, row := sealTestPurchase()
	sealed := s.sealReversal(t.Context(), rev, "cup", row)
	plain, err := s.Journal.Vault.Open(sealed)
	require.NoError(t, err)
	require.Equal(t, byte(sealedCompact), plain[0], "a reversal whose row holds the rest is sealed compact")
	require.Less(t, len(sealed), 150, "compact: the write-ahead row carries about 100 bytes, not the whole 0420")

	got, err := openReversal(t.Context(), s.Journal, sealed, row)
	require.NoError(t, err)
	require.Equal(t, *rev, got.Message, "rebuilt from the row, the 0420 is the one prepared")
	require.Equal(t, "cup", got.Route)
	require.NotContains(t, string(plain), "=2912", "no track data in a reversal")

	_, err = openReversal(t.Context(), s.Journal, sealed, journal.ReversalRow{})
	require.ErrorContains(t, err, "row, which is gone")
}

func TestSealedReversalFallsBackToPacked(t *testing.T) {
	s := sealTestSwitch(t)
	rev, row := sealTestPurchase()
	for name, change := range map[string]func(*upstream.Message, *journal.ReversalRow){
		"a field the compact form does not carry": func(m *upstream.Message, _ *journal.ReversalRow) { m.Balance = "1002156C000000010000" },
		"a row that differs from the message":     func(_ *upstream.Message, r *journal.ReversalRow) { r.Amount = 1 },
	} {
		m, r := *rev, row
		change(&m, &r)
		sealed := s.sealReversal(t.Context(), &m, "cup", r)
		plain, err := s.Journal.Vault.Open(sealed)
		require.NoError(t, err)
		require.Equal(t, byte(sealedPacked), plain[0], name)
		got, err := openReversal(t.Context(), s.Journal, sealed, r)
		require.NoError(t, err, name)
		require.Equal(t, m, got.Message, name)
	}
}

// TestPackDigits: digit strings pack two to a byte, anything else is kept as it is, and a cut
// or corrupted value is refused.
func TestPackDigits(t *testing.T) {
	for _, v := range []string{"", "1", "12", "6222020000000000001", "2912", "00", "ABC123", "12 4", strings.Repeat("9", 127)} {
		b, err := packDigits(nil, v)
		require.NoError(t, err, v)
		got, rest, err := unpackDigits(b)
		require.NoError(t, err, v)
		require.Equal(t, v, got)
		require.Empty(t, rest)
	}
	b, _ := packDigits(nil, "6222020000000000001")
	require.Len(t, b, 11, "19 digits in 10 bytes and a length")
	_, _, err := unpackDigits(b[:5])
	require.ErrorContains(t, err, "expected 10 bytes, found 4")
	_, err = packDigits(nil, strings.Repeat("9", 128))
	require.Error(t, err)
	_, _, err = unpackDigits([]byte{2, 0xA1})
	require.ErrorContains(t, err, "expected a digit")
}
