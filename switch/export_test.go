package posswitch

import (
	"context"

	"github.com/shoudan/shoudan/spec/upstream"
	"github.com/shoudan/shoudan/switch/journal"
)

// DrainGrace is the listener's drainGrace, for the tests outside the package.
const DrainGrace = drainGrace

// the sealed reversal's forms, for sealed_context_test.go (which needs a database: switchtest)
func SealReversal(s *Switch, ctx context.Context, m *upstream.Message, route string, row journal.ReversalRow) []byte {
	return s.sealReversal(ctx, m, route, row)
}

func OpenReversal(ctx context.Context, j *journal.Journal, sealed []byte, row journal.ReversalRow) (*SealedReversal, error) {
	return openReversal(ctx, j, sealed, row)
}

const SealedContext = sealedContext

func SealTestPurchase() (*upstream.Message, journal.ReversalRow) { return sealTestPurchase() }
