package posswitch

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/issuerlink"
	"github.com/shoudan/shoudan/spec/upstream"
	"github.com/shoudan/shoudan/switch/journal"
)

// Recover runs at start-up: transactions left pending at the issuer by a crash are marked timed
// out and their prepared reversals armed, so store-and-forward reverses them.
func (s *Switch) Recover(ctx context.Context) (int, error) {
	left, err := s.Journal.InFlight(ctx, 0)
	if err != nil {
		return 0, err
	}
	for _, t := range left {
		if err := s.Journal.Commit(ctx, func(b *pgx.Batch) {
			journal.FinishOp(t.ID, journal.Outcome{State: journal.TimedOut, RespCode: "98", Rule: "recovery", Reason: "in flight at the issuer when the switch stopped: reversed"})(b)
			journal.ArmReversalOp(t.ID)(b)
		}); err != nil {
			return 0, err
		}
	}
	return len(left), nil
}

// SAFQueue adapts the journal to the forwarder's queue, opening the sealed reversals.
type SAFQueue struct{ Journal *journal.Journal }

func (q SAFQueue) Due(ctx context.Context, n int) ([]issuerlink.Reversal, error) {
	es, err := q.Journal.ClaimReversals(ctx, n, 30*time.Second)
	if err != nil {
		return nil, err
	}
	out := make([]issuerlink.Reversal, 0, len(es))
	for _, e := range es {
		plain, err := q.Journal.Vault.Open(e.Payload)
		if err != nil {
			continue
		}
		var m upstream.Message
		if json.Unmarshal(plain, &m) != nil {
			continue
		}
		out = append(out, issuerlink.Reversal{ID: e.ID, Attempts: e.Attempts, Message: &m})
	}
	return out, nil
}

func (q SAFQueue) Ack(ctx context.Context, id int64) error { return q.Journal.AckReversal(ctx, id) }

func (q SAFQueue) Retry(ctx context.Context, id int64, after time.Duration, why string) error {
	return q.Journal.RetryReversal(ctx, id, after, why)
}
