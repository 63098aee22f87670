package posswitch

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/issuerlink"
	"github.com/shoudan/shoudan/switch/journal"
)

// Recover runs at start-up: transactions left pending at the issuer by a crash are marked timed
// out and their prepared reversals armed, so store-and-forward reverses them.
func (s *Switch) Recover(ctx context.Context) (int, error) {
	// pending rows can only have ids from the floor the nodes recorded on: a key range, no index
	// on state (which would make every outcome update non-HOT)
	floor, err := s.Journal.RecoveryFloor(ctx)
	if err != nil {
		return 0, err
	}
	// a reversal's effect is committed with its request: one left pending is complete
	// requests journaled but never sent upstream: the terminal got no approval; close them as 96
	if err := s.Journal.Commit(ctx, func(b *pgx.Batch) {
		// ids carry their day: the floor also bounds the partitions to read
		b.Queue(`INSERT INTO txn_outcome (id, local_day, at, state, resp_code, rule, reason)
			SELECT id, local_day, now(), 'A', '00', 'recovery', 'reversal recorded before the switch stopped' FROM txn
			WHERE id >= $1 AND local_day >= $2 AND state='P' AND kind='reversal'
			ON CONFLICT (id, local_day) DO UPDATE SET at = EXCLUDED.at, state = EXCLUDED.state, resp_code = EXCLUDED.resp_code,
				rule = EXCLUDED.rule, reason = EXCLUDED.reason`, floor, journal.DayOf(floor))
		b.Queue(`WITH closed AS (INSERT INTO txn_outcome (id, local_day, at, state, resp_code, rule, reason)
				SELECT id, local_day, now(), 'D', '96', 'recovery', 'the switch stopped before this request went upstream' FROM txn
				WHERE id >= $1 AND local_day >= $2 AND state='P' AND NOT went_upstream
				ON CONFLICT (id, local_day) DO UPDATE SET at = EXCLUDED.at, state = EXCLUDED.state, resp_code = EXCLUDED.resp_code,
					rule = EXCLUDED.rule, reason = EXCLUDED.reason
				RETURNING id, local_day)
			DELETE FROM txn_reversal r USING closed c WHERE r.id = c.id AND r.local_day = c.local_day AND r.local_day >= $2`, floor, journal.DayOf(floor))
	}); err != nil {
		return 0, err
	}
	left, err := s.Journal.InFlight(ctx, floor, 0)
	if err != nil {
		return 0, err
	}
	for _, t := range left {
		if err := s.Journal.Commit(ctx, func(b *pgx.Batch) {
			journal.FinishOp(t.ID, journal.Outcome{State: journal.TimedOut, RespCode: "98", Rule: "recovery",
				Reason: "in flight at the issuer when the switch stopped: reversed", WentUpstream: true, KeepReversal: true})(b)
			journal.ArmReversalOp(t.ID)(b)
		}); err != nil {
			return 0, err
		}
	}
	// every pending row from the floor on is handled: the floors of nodes that stopped (not
	// written for a minute; a running node writes it every few seconds) need not pin the next
	// recovery to their old ids
	if _, err := s.Journal.ForgetStaleFloors(ctx, time.Minute); err != nil {
		return len(left), err
	}
	return len(left), nil
}

// SAFQueue adapts the journal to the forwarder's queue, opening the sealed reversals.
// Lease is how long a claimed reversal is reserved for its sender: longer than one issuer round
// trip, short enough that a crash mid-send delays the retry only briefly.
type SAFQueue struct {
	Journal *journal.Journal
	Lease   time.Duration
}

func (q SAFQueue) Due(ctx context.Context, n int) ([]issuerlink.Reversal, error) {
	lease := q.Lease
	if lease == 0 {
		lease = 10 * time.Second
	}
	es, err := q.Journal.ClaimReversals(ctx, n, lease)
	if err != nil {
		return nil, err
	}
	out := make([]issuerlink.Reversal, 0, len(es))
	for _, e := range es {
		m, err := openReversal(ctx, q.Journal, e.Payload, e.Row)
		if err != nil {
			continue
		}
		out = append(out, issuerlink.Reversal{ID: e.ID, Attempts: e.Attempts, Message: &m.Message, Route: m.Route})
	}
	return out, nil
}

func (q SAFQueue) Ack(ctx context.Context, id int64) error { return q.Journal.AckReversal(ctx, id) }

func (q SAFQueue) Retry(ctx context.Context, id int64, after time.Duration, why string) error {
	return q.Journal.RetryReversal(ctx, id, after, why)
}
