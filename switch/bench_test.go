package posswitch_test

import (
	"testing"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/stretchr/testify/require"
)

// The decision pipeline and a whole purchase, in process, on a real PostgreSQL and the
// simulated issuer (no terminal socket): regressions in either show up in review.
//
//	go test ./switch -run '^$' -bench . -benchmem

// BenchmarkDecide: the acquirer checks of protocol.md §7 on a signed-on terminal's chip purchase
// with PIN (decode excluded, MAC and F59 check value included).
func BenchmarkDecide(b *testing.B) {
	s := switchtest.Start(b, switchtest.Options{})
	d := s.SignedOn("10000001")
	req, err := d.PurchaseRequest(good, 100)
	require.NoError(b, err)
	raw, err := d.Frame(pos.Purchase, req)
	require.NoError(b, err)
	f, err := pos.Decode(raw)
	require.NoError(b, err)
	ctx := b.Context()
	for b.Loop() {
		if dec := s.Switch.Decide(ctx, terminals.Production, f); dec.Code != "" {
			b.Fatalf("declined: %+v", dec)
		}
	}
}

// BenchmarkPurchase: Handle of a decoded purchase: checks, write-ahead commit, issuer round trip
// (simulator on loopback TCP), outcome commit, response encoded and MACed. One at a time, so
// this is latency, not throughput (group commit has nothing to group).
func BenchmarkPurchase(b *testing.B) {
	s := switchtest.Start(b, switchtest.Options{})
	d := s.SignedOn("10000001")
	frames := make([]*pos.Frame, b.N)
	for i := range frames {
		req, err := d.PurchaseRequest(good, 1)
		require.NoError(b, err)
		raw, err := d.Frame(pos.Purchase, req)
		require.NoError(b, err)
		frames[i], err = pos.Decode(raw)
		require.NoError(b, err)
	}
	ctx := b.Context()
	b.ResetTimer()
	for i := range b.N {
		out, _ := s.Switch.Handle(ctx, terminals.Production, frames[i])
		if i == 0 {
			f, err := pos.Decode(out)
			require.NoError(b, err)
			code, _ := f.Msg.GetString(39)
			require.Equal(b, rc.Approved, code)
		}
	}
}
