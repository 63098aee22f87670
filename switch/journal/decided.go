package journal

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DecidedFilter selects the transactions EachDecided streams: local days From..To inclusive, and
// one merchant when MID is set.
type DecidedFilter struct {
	From, To time.Time
	MID      string
}

// EachDecided streams the financial transactions of f (in no particular order: the scan follows
// the table, not a sort of it), each with what its decision
// read (Txn's decision columns and Inputs; card data, responses and reversals are not read) and,
// for a refund, the local day of the original it found (zero when none). It runs in a read-only
// transaction: what reads this way cannot change the journal.
func (j *Journal) EachDecided(ctx context.Context, f DecidedFilter, fn func(t *Txn, origDay time.Time) error) error {
	tx, err := j.Pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `SELECT id, created_at, local_day, env, mid, tid, batch, stan, mti, kind, amount, entry_mode,
		rrn, resp_code, state, rule, reason, checks, req_mcc, has_pin, dev_serial, dev_sdk, dev_check,
		CASE WHEN kind = 'refund' THEN txn_day(orig_id) END
		FROM txn WHERE local_day BETWEEN $1 AND $2 AND ($3 = '' OR (mid = $3 AND hashtext(mid) = hashtext($3)))
		AND kind IN ('purchase', 'void', 'refund', 'balance', 'status', 'reversal')`,
		f.From, f.To, f.MID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer rows.Close()
	var t Txn
	var state string
	var orig *time.Time
	var checks int64
	for rows.Next() {
		t = Txn{}
		orig = nil
		if err := rows.Scan(&t.ID, &t.CreatedAt, &t.LocalDay, &t.Env, &t.MID, &t.TID, &t.Batch, &t.STAN, &t.MTI, &t.Kind, &t.Amount,
			&t.EntryMode, &t.RRN, &t.RespCode, &state, &t.Rule, &t.Reason, &checks, &t.Inputs.ReqMCC, &t.Inputs.HasPIN,
			&t.Inputs.DevSerial, &t.Inputs.DevSDK, &t.Inputs.DevCheck, &orig); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		t.State = state[0]
		t.Trace = ChecksTrace(checks)
		var od time.Time
		if orig != nil {
			od = *orig
		}
		if err := fn(&t, od); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}
