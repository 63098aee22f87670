package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// TerminalState is a terminal's dynamic state: sign-on, current batch and working keys (sealed),
// and the sign-ons it has not proven yet.
//
// A sign-on (0800) carries no MAC: anyone who knows a TID and MID can send one. So a sign-on does
// not replace the terminal's keys; it adds a pending sign-on (new keys and the next batch). The
// terminal's first request MACed with the new keys proves it holds them (only the holder of the
// TMK can decrypt them) and makes them current; until then the current keys and batch keep
// working. A forged sign-on therefore knocks nobody off.
type TerminalState struct {
	Batch      string
	SignedOn   bool
	KeysEnc    []byte
	Operator   string // F63.1 of the sign-on the current keys came from
	ProvenFrom string // the address of the request that proved the current keys ("" before migration 0012)
	// Pending are the sign-ons not proven yet, newest first (at most KeepPending).
	Pending []PendingSignOn
}

// PendingSignOn is a sign-on whose keys the terminal has not used yet.
type PendingSignOn struct {
	ID       int64
	Batch    string
	KeysEnc  []byte
	Operator string
	Source   string // the address the sign-on came from
	At       time.Time
}

// KeepPending is how many unproven sign-ons a terminal keeps: a terminal that signs on again
// before using its keys (a lost answer) still finds the keys it got, and a run of forged
// sign-ons pushes out only forged ones once the rate limit stops them.
const KeepPending = 4

// Current reports whether the terminal has working keys it proved (signed on or not).
func (s *TerminalState) Current() bool { return s != nil && len(s.KeysEnc) > 0 }

// TerminalState reads a terminal's state; nil when it never signed on. The result is shared:
// callers must not modify it.
func (j *Journal) TerminalState(ctx context.Context, mid, tid string) (*TerminalState, error) {
	key := stateKey(mid, tid)
	st, gen, ok := j.states.get(key)
	if ok {
		return st, nil
	}
	var s TerminalState
	found := true
	err := j.Pool.QueryRow(ctx, "SELECT batch, signed_on, keys_enc, operator, proven_from FROM terminal_state WHERE mid=$1 AND tid=$2", mid, tid).
		Scan(&s.Batch, &s.SignedOn, &s.KeysEnc, &s.Operator, &s.ProvenFrom)
	if errors.Is(err, pgx.ErrNoRows) {
		found = false
	} else if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	rows, err := j.Pool.Query(ctx, "SELECT id, batch, keys_enc, operator, source, at FROM signon_pending WHERE mid=$1 AND tid=$2 ORDER BY id DESC LIMIT $3", mid, tid, KeepPending)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for rows.Next() {
		var p PendingSignOn
		if err := rows.Scan(&p.ID, &p.Batch, &p.KeysEnc, &p.Operator, &p.Source, &p.At); err != nil {
			rows.Close()
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		s.Pending = append(s.Pending, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !found && len(s.Pending) == 0 {
		return nil, nil
	}
	j.states.put(key, &s, gen)
	return &s, nil
}

// SignOn makes new working keys (sealed), their batch and the operator code (F63.1) current at
// once, without a pending step (tools and tests; the switch uses PendSignOn).
func (j *Journal) SignOn(ctx context.Context, mid, tid, batch, operator string, keysEnc []byte) error {
	defer j.states.evict(stateKey(mid, tid)) // whatever the outcome, the next read goes to the journal
	return j.Commit(ctx, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO terminal_state (mid, tid, batch, signed_on, keys_enc, signed_on_at, operator) VALUES ($1,$2,$3,true,$4,now(),$5)
			ON CONFLICT (mid, tid) DO UPDATE SET batch=$3, signed_on=true, keys_enc=$4, signed_on_at=now(), operator=$5`, mid, tid, batch, keysEnc, operator)
		notifyStateOp(b, mid, tid)
	})
}

// PendSignOn records a sign-on that is not proven yet: its keys (sealed), batch, operator code
// and source address. Only the newest KeepPending of a terminal are kept.
func (j *Journal) PendSignOn(ctx context.Context, mid, tid string, p PendingSignOn) error {
	defer j.states.evict(stateKey(mid, tid))
	return j.Commit(ctx, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO signon_pending (mid, tid, batch, keys_enc, operator, source) VALUES ($1,$2,$3,$4,$5,$6)`,
			mid, tid, p.Batch, p.KeysEnc, p.Operator, p.Source)
		b.Queue(`DELETE FROM signon_pending WHERE mid=$1 AND tid=$2 AND id NOT IN
			(SELECT id FROM signon_pending WHERE mid=$1 AND tid=$2 ORDER BY id DESC LIMIT $3)`, mid, tid, KeepPending)
		notifyStateOp(b, mid, tid)
	})
}

// ProveSignOn makes a pending sign-on current: the terminal MACed a request (from source) with
// its keys. It and every older pending sign-on are dropped; newer ones stay pending. It reports
// false when the pending sign-on was already gone (another node proved or replaced it).
func (j *Journal) ProveSignOn(ctx context.Context, mid, tid string, p PendingSignOn, source string) (bool, error) {
	defer j.states.evict(stateKey(mid, tid))
	proved := false
	err := j.Commit(ctx, func(b *pgx.Batch) {
		b.Queue(`WITH p AS (DELETE FROM signon_pending WHERE mid=$1 AND tid=$2 AND id <= $3 RETURNING id)
			INSERT INTO terminal_state (mid, tid, batch, signed_on, keys_enc, signed_on_at, operator, proven_from)
			SELECT $1, $2, $4, true, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM p WHERE id = $3)
			ON CONFLICT (mid, tid) DO UPDATE SET batch=$4, signed_on=true, keys_enc=$5, signed_on_at=$6, operator=$7, proven_from=$8
			RETURNING true`, mid, tid, p.ID, p.Batch, p.KeysEnc, p.At, p.Operator, source).QueryRow(func(row pgx.Row) error {
			err := row.Scan(&proved)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
		notifyStateOp(b, mid, tid)
	})
	return proved, err
}

// SetProvenFrom records the address a terminal's current keys were proven from, when none is
// recorded yet (keys made current before migration 0012).
func (j *Journal) SetProvenFrom(ctx context.Context, mid, tid, addr string) error {
	defer j.states.evict(stateKey(mid, tid))
	return j.Commit(ctx, func(b *pgx.Batch) {
		b.Queue(`UPDATE terminal_state SET proven_from=$3 WHERE mid=$1 AND tid=$2 AND proven_from=''`, mid, tid, addr)
		notifyStateOp(b, mid, tid)
	})
}

// SignOff records a sign-off: the current keys no longer serve purchases (they stay for the
// terminal's pending reversals) and pending sign-ons are dropped.
func (j *Journal) SignOff(ctx context.Context, mid, tid string) error {
	defer j.states.evict(stateKey(mid, tid))
	return j.Commit(ctx, func(b *pgx.Batch) {
		b.Queue(`UPDATE terminal_state SET signed_on=false WHERE mid=$1 AND tid=$2`, mid, tid)
		b.Queue(`DELETE FROM signon_pending WHERE mid=$1 AND tid=$2`, mid, tid)
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
	// Row is what the transaction's row holds of the reversal: the compact sealed form keeps
	// only the rest (zero when the row is gone).
	Row ReversalRow
}

// ReversalRow are the columns of a transaction that its 0420 repeats.
type ReversalRow struct {
	MTI, ProcCode, UpTrace, UpTime, RRN, TID, MID, MCC, EntryMode string
	Amount                                                        int64
}

// RowOf is the part of a transaction a reversal repeats.
func RowOf(t *Txn) ReversalRow {
	return ReversalRow{MTI: t.MTI, ProcCode: t.ProcCode, UpTrace: t.UpTrace, UpTime: t.UpTime, RRN: t.RRN, TID: t.TID, MID: t.MID,
		MCC: t.MCC, EntryMode: t.EntryMode, Amount: t.Amount}
}

// ArmReversalOp makes a transaction's prepared reversal (written with its write-ahead record)
// due now, once: an armed or acknowledged one stays as it is.
func ArmReversalOp(txnID int64) func(*pgx.Batch) {
	return func(b *pgx.Batch) {
		b.Queue(`INSERT INTO saf (txn_id, payload, next_at) SELECT id, sealed, now() FROM `+ReversalOf(txnID)+` WHERE id = $1
			ON CONFLICT (txn_id) DO NOTHING`, txnID)
	}
}

// ClaimReversals takes up to n due reversals and leases them for lease, so that another node (or
// a restarted one) does not send them at the same time. Attempts counts earlier sends: a claimed
// entry with Attempts > 0 goes out as a repeat.
func (j *Journal) ClaimReversals(ctx context.Context, n int, lease time.Duration) ([]SAFEntry, error) {
	rows, err := j.Pool.Query(ctx, `WITH c AS (UPDATE saf SET next_at = now() + $2::interval, attempts = attempts + 1
		WHERE id IN (SELECT id FROM saf WHERE acked_at IS NULL AND next_at <= now() ORDER BY id FOR UPDATE SKIP LOCKED LIMIT $1)
		RETURNING id, txn_id, attempts - 1 AS attempts, payload, created_at)
		SELECT c.id, c.txn_id, c.attempts, c.payload, c.created_at, coalesce(t.mti, ''), coalesce(t.proc_code, ''), coalesce(t.up_trace, ''),
			coalesce(t.up_time, ''), coalesce(t.rrn, ''), coalesce(t.tid, ''), coalesce(t.mid, ''), coalesce(t.mcc, ''), coalesce(t.entry_mode, ''),
			coalesce(t.amount, 0)
		FROM c LEFT JOIN txn t ON t.id = c.txn_id AND t.local_day = txn_day(c.txn_id) ORDER BY c.id`, n, lease.String())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []SAFEntry
	for rows.Next() {
		var e SAFEntry
		r := &e.Row
		if err := rows.Scan(&e.ID, &e.TxnID, &e.Attempts, &e.Payload, &e.Created, &r.MTI, &r.ProcCode, &r.UpTrace, &r.UpTime, &r.RRN,
			&r.TID, &r.MID, &r.MCC, &r.EntryMode, &r.Amount); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// AckReversal records that the issuer acknowledged a reversal; the transaction's sealed copy
// is no longer needed and is dropped.
func (j *Journal) AckReversal(ctx context.Context, id int64) error {
	var txnID int64
	err := j.Pool.QueryRow(ctx, "UPDATE saf SET acked_at = now(), last_error = '' WHERE id = $1 RETURNING txn_id", id).Scan(&txnID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = j.Pool.Exec(ctx, "DELETE FROM "+ReversalOf(txnID)+" WHERE id = $1", txnID)
	if err != nil && strings.Contains(err.Error(), "does not exist") { // its day was archived meanwhile
		err = nil
	}
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
	return j.many(ctx, "SELECT "+txnColumns+" FROM txn WHERE id >= $1 AND local_day >= $2 AND state='P' AND went_upstream AND updated_at < now() - $3::interval",
		floor, DayOf(floor), olderThan.String())
}
