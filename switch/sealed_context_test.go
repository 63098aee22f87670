package posswitch_test

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/shoudan/shoudan/spec/upstream"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/require"
)

// TestContextSealedReversal: with the journal at hand a reversal is sealed in the context form:
// what it repeats of its merchant and route lives once in reversal_context, the card data
// stays sealed and is about half of the compact form; another switch on the same database
// opens it, and a second merchant gets its own context.
func TestContextSealedReversal(t *testing.T) {
	ctx := t.Context()
	key := make([]byte, 32)
	v, err := journal.NewVault(key)
	require.NoError(t, err)
	url := switchtest.Database(t)
	j, err := journal.Open(ctx, url, v)
	require.NoError(t, err)
	t.Cleanup(j.Close)
	s := &posswitch.Switch{Journal: j, Log: slog.New(slog.DiscardHandler)}
	rev, row := posswitch.SealTestPurchase()

	compact := posswitch.SealReversal(&posswitch.Switch{Journal: &journal.Journal{Vault: v}, Log: s.Log}, ctx, rev, "cup", row)
	sealed := posswitch.SealReversal(s, ctx, rev, "cup", row)
	plain, err := j.Vault.Open(sealed)
	require.NoError(t, err)
	require.Equal(t, byte(posswitch.SealedContext), plain[0])
	t.Logf("sealed: compact %d bytes, context %d", len(compact), len(sealed))
	require.Less(t, len(sealed), len(compact)-40, "the context form keeps the merchant's and route's fields once, not in every reversal")
	require.NotContains(t, string(plain), "SHOUDAN DEMO STORE", "the merchant's name is in the context")

	var fields []byte
	require.NoError(t, j.Pool.QueryRow(ctx, "SELECT fields FROM reversal_context").Scan(&fields))
	require.Contains(t, string(fields), "SHOUDAN DEMO STORE")
	require.NotContains(t, string(fields), rev.PAN, "no card data in a context")
	require.NotContains(t, string(fields), "2912", "no expiry in a context")

	// another node: nothing cached
	j2, err := journal.Open(ctx, url, v)
	require.NoError(t, err)
	t.Cleanup(j2.Close)
	got, err := posswitch.OpenReversal(ctx, j2, sealed, row)
	require.NoError(t, err)
	require.Equal(t, *rev, got.Message, "rebuilt from the context and the row, the 0420 is the one prepared")
	require.Equal(t, "cup", got.Route)

	// the same merchant and route again: the same context; another merchant: a new one
	again := posswitch.SealReversal(s, ctx, rev, "cup", row)
	other := *rev
	other.MerchantName = fmt.Sprintf("%-40.40s", "ANOTHER SHOP")
	other.PAN, other.LocalTime = "6222020000000000999", "160001"
	third := posswitch.SealReversal(s, ctx, &other, "cup", row)
	var n int
	require.NoError(t, j.Pool.QueryRow(ctx, "SELECT count(*) FROM reversal_context").Scan(&n))
	require.Equal(t, 2, n, "one context per merchant and route")
	for sealed, want := range map[string]*upstream.Message{string(again): rev, string(third): &other} {
		got, err := posswitch.OpenReversal(ctx, j2, []byte(sealed), row)
		require.NoError(t, err)
		require.Equal(t, *want, got.Message)
	}
	_, err = posswitch.OpenReversal(ctx, j2, sealed, journal.ReversalRow{})
	require.ErrorContains(t, err, "row, which is gone")
}
