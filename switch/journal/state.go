package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// TerminalState is a terminal's dynamic state: sign-on, current batch and working keys (sealed).
type TerminalState struct {
	Batch    string
	SignedOn bool
	KeysEnc  []byte
	Operator string // F63.1 of the last sign-on
}

// TerminalState reads a terminal's state; nil when it never signed on. The result is shared:
// callers must not modify it.
func (j *Journal) TerminalState(ctx context.Context, mid, tid string) (*TerminalState, error) {
	key := stateKey(mid, tid)
	st, gen, ok := j.states.get(key)
	if ok {
		return st, nil
	}
	var s TerminalState
	err := j.Pool.QueryRow(ctx, "SELECT batch, signed_on, keys_enc, operator FROM terminal_state WHERE mid=$1 AND tid=$2", mid, tid).Scan(&s.Batch, &s.SignedOn, &s.KeysEnc, &s.Operator)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	j.states.put(key, &s, gen)
	return &s, nil
}

// SignOn records a sign-on: new working keys (sealed), the batch the terminal must use and the
// operator code (F63.1) that signed on.
func (j *Journal) SignOn(ctx context.Context, mid, tid, batch, operator string, keysEnc []byte) error {
	defer j.states.evict(stateKey(mid, tid)) // whatever the outcome, the next read goes to the journal
	return j.Commit(ctx, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO terminal_state (mid, tid, batch, signed_on, keys_enc, signed_on_at, operator) VALUES ($1,$2,$3,true,$4,now(),$5)
			ON CONFLICT (mid, tid) DO UPDATE SET batch=$3, signed_on=true, keys_enc=$4, signed_on_at=now(), operator=$5`, mid, tid, batch, keysEnc, operator)
		notifyStateOp(b, mid, tid)
	})
}

// SignOff records a sign-off (the keys stay for the terminal's pending reversals).
func (j *Journal) SignOff(ctx context.Context, mid, tid string) error {
	defer j.states.evict(stateKey(mid, tid))
	return j.Commit(ctx, func(b *pgx.Batch) {
		b.Queue(`UPDATE terminal_state SET signed_on=false WHERE mid=$1 AND tid=$2`, mid, tid)
		notifyStateOp(b, mid, tid)
	})
}

// SAFEntry is a reversal waiting to be delivered upstream.
type SAFEntry struct {
	ID       int64
	TxnID    int64
	Attempts int
	Payload  []byte // sealed
	Created  time.Time
}

// ArmReversalOp makes a transaction's prepared reversal (written with its write-ahead record)
// due now, once: an armed or acknowledged one stays as it is.
func ArmReversalOp(txnID int64) func(*pgx.Batch) {
	return func(b *pgx.Batch) {
		b.Queue(`INSERT INTO saf (txn_id, payload, next_at) SELECT id, reversal, now() FROM txn WHERE id = $1 AND reversal IS NOT NULL
			ON CONFLICT (txn_id) DO NOTHING`, txnID)
	}
}

// ClaimReversals takes up to n due reversals and leases them for lease, so that another node (or
// a restarted one) does not send them at the same time. Attempts counts earlier sends: a claimed
// entry with Attempts > 0 goes out as a repeat.
func (j *Journal) ClaimReversals(ctx context.Context, n int, lease time.Duration) ([]SAFEntry, error) {
	rows, err := j.Pool.Query(ctx, `UPDATE saf SET next_at = now() + $2::interval, attempts = attempts + 1
		WHERE id IN (SELECT id FROM saf WHERE acked_at IS NULL AND next_at <= now() ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1)
		RETURNING id, txn_id, attempts - 1, payload, created_at`, n, lease.String())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []SAFEntry
	for rows.Next() {
		var e SAFEntry
		if err := rows.Scan(&e.ID, &e.TxnID, &e.Attempts, &e.Payload, &e.Created); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// AckReversal records that the issuer acknowledged a reversal.
func (j *Journal) AckReversal(ctx context.Context, id int64) error {
	_, err := j.Pool.Exec(ctx, "UPDATE saf SET acked_at = now(), last_error = '' WHERE id = $1", id)
	return err
}

// RetryReversal records a failed delivery and when to try again.
func (j *Journal) RetryReversal(ctx context.Context, id int64, after time.Duration, why string) error {
	_, err := j.Pool.Exec(ctx, "UPDATE saf SET next_at = now() + $2::interval, last_error = $3 WHERE id = $1", id, after.String(), why)
	return err
}

// SAFStats is the queue's depth and the age of its oldest entry.
func (j *Journal) SAFStats(ctx context.Context) (depth int, oldest time.Duration, err error) {
	var age float64
	err = j.Pool.QueryRow(ctx, "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM saf WHERE acked_at IS NULL AND next_at < 'infinity'").Scan(&depth, &age)
	return depth, time.Duration(age * float64(time.Second)), err
}

// InFlight lists transactions left pending at the issuer (a crash between going upstream and
// recording the outcome): recovery marks them timed out and arms their prepared reversals.
// Only ids from floor on are read (see RecoveryFloor).
func (j *Journal) InFlight(ctx context.Context, floor int64, olderThan time.Duration) ([]*Txn, error) {
	return j.many(ctx, "SELECT "+txnColumns+" FROM txn WHERE id >= $1 AND state='P' AND went_upstream AND updated_at < now() - $2::interval", floor, olderThan.String())
}
