package settlement

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The journal's txn table is only read, and only here: these queries are the whole contract
// between settlement and the journal's schema.

// Item is one journaled transaction as settlement sees it.
type Item struct {
	ID                   int64
	MID, TID, Batch      string
	STAN, RRN, Kind, MCC string
	PAN                  string // masked
	Amount               int64
	At                   time.Time
	// Base is the signed amount the discount fee applies to: +amount for a purchase and for a
	// reversed void, -amount for a void and a reversed purchase, 0 for a refund.
	Base int64
	// Refund is the amount of an approved refund (0 for other kinds).
	Refund int64
	orig   int64 // a reversal's original
}

// Takings is the item's effect on the day's takings (refunds are cleared separately).
func (it *Item) Takings() int64 { return it.Base }

// FeeOf is the item's signed fee under terms: a void or reversal returns the fee its
// original was charged.
func (it *Item) FeeOf(t Terms) int64 {
	switch {
	case it.Base > 0:
		return Fee(it.Base, t.Rate, t.Cap)
	case it.Base < 0:
		return -Fee(-it.Base, t.Rate, t.Cap)
	}
	return 0
}

// localDays is the range of txn.local_day (the switch's local date) that can hold transactions
// of settlement date d: local_day is the key the journal's unique index starts with.
func (c *Config) localDays(d time.Time) (time.Time, time.Time) {
	from := c.Cutoff.At(d.AddDate(0, 0, -1)).In(time.Local)
	to := c.Cutoff.At(d).Add(-time.Nanosecond).In(time.Local)
	day := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }
	return day(from), day(to)
}

func dateOnly(d time.Time) time.Time {
	return time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
}

// scanItems streams the transactions of settlement date d that move money (approved purchases,
// voids and refunds, and reversals of approved originals), for one merchant or all (mid ""),
// calling f for each that counts (reversals last). full reads every column a statement shows;
// otherwise only what the close needs (TID, batch, STAN, MCC and card are left empty).
func (c *Config) scanItems(ctx context.Context, db *pgxpool.Pool, d time.Time, mid string, full bool, f func(*Item)) error {
	from, to := c.localDays(d)
	cols := "id, mid, '', '', '', rrn, kind, '', '', amount, created_at, orig_id"
	if full {
		cols = "id, mid, tid, batch, stan, rrn, kind, mcc, pan_masked, amount, created_at, orig_id"
	}
	q := "SELECT " + cols + ` FROM txn
		WHERE local_day BETWEEN $1 AND $2 AND settle_date = $3
		  AND ((kind IN ('purchase', 'void', 'refund') AND resp_code = '00') OR (kind = 'reversal' AND orig_id IS NOT NULL AND state = 'A'))`
	args := []any{from, to, dateOnly(d)}
	if mid != "" {
		q += " AND mid = $4 AND hashtext(mid) = hashtext($4)" // by the merchant's index (journal migration 0027)
		args = append(args, mid)
	}
	if full {
		q += " ORDER BY id"
	}
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	var revs []*Item
	var origs []int64
	for rows.Next() {
		it := &Item{}
		var origID *int64
		if err := rows.Scan(&it.ID, &it.MID, &it.TID, &it.Batch, &it.STAN, &it.RRN, &it.Kind, &it.MCC, &it.PAN, &it.Amount, &it.At, &origID); err != nil {
			rows.Close()
			return fmt.Errorf("reading the journal: %w", err)
		}
		switch it.Kind {
		case "purchase":
			it.Base = it.Amount
		case "void":
			it.Base = -it.Amount
		case "refund":
			it.Refund = it.Amount
		case "reversal":
			it.orig = *origID
			revs = append(revs, it)
			origs = append(origs, *origID)
			continue
		}
		f(it)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	if len(revs) == 0 {
		return nil
	}
	// The originals of the reversals, by primary key. A reversal moves money only if its
	// original was approved, it is the first reversal of it, and (for a purchase) no approved
	// void came before it: the issuer treats the others as repeats.
	type orig struct {
		kind, rc string
		day      time.Time
	}
	byID := map[int64]orig{}
	rows, err = db.Query(ctx, "SELECT id, kind, resp_code, local_day FROM txn WHERE id = ANY($1)", origs)
	if err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	var days []time.Time
	for rows.Next() {
		var id int64
		var o orig
		if err := rows.Scan(&id, &o.kind, &o.rc, &o.day); err != nil {
			rows.Close()
			return err
		}
		byID[id] = o
		days = append(days, o.day)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	before := map[int64]int64{} // original id -> the first id of a reversal or approved void of it
	rows, err = db.Query(ctx, `SELECT orig_id, min(id) FROM txn WHERE local_day = ANY($1) AND orig_id = ANY($2)
		AND (kind = 'reversal' OR (kind = 'void' AND resp_code = '00')) GROUP BY orig_id`, days, origs)
	if err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	for rows.Next() {
		var o, first int64
		if err := rows.Scan(&o, &first); err != nil {
			rows.Close()
			return err
		}
		before[o] = first
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, it := range revs {
		o, ok := byID[it.orig]
		if !ok || o.rc != "00" || (o.kind != "purchase" && o.kind != "void") {
			continue // reversed nothing that had moved money
		}
		if first, ok := before[it.orig]; ok && first != it.ID {
			continue
		}
		if o.kind == "purchase" {
			it.Base = -it.Amount
		} else {
			it.Base = it.Amount
		}
		f(it)
	}
	return nil
}

// pendingAtIssuer counts the transactions of settlement date d still waiting for the issuer's
// answer: a day is not closed under them.
func (c *Config) pendingAtIssuer(ctx context.Context, db *pgxpool.Pool, d time.Time) (int, error) {
	from, to := c.localDays(d)
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM txn WHERE local_day BETWEEN $1 AND $2 AND settle_date = $3 AND state = 'P'`,
		from, to, dateOnly(d)).Scan(&n)
	return n, err
}

// firstJournalDay is the settlement date of the oldest journaled transaction (ok false: none).
func firstJournalDay(ctx context.Context, db *pgxpool.Pool) (time.Time, bool, error) {
	var d *time.Time
	err := db.QueryRow(ctx, `SELECT settle_date FROM txn WHERE local_day = (SELECT min(local_day) FROM txn) ORDER BY settle_date LIMIT 1`).Scan(&d)
	if err == pgx.ErrNoRows || (err == nil && d == nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return *d, true, nil
}

// IssuerItem is a transaction the journal says the issuer approved, for reconciliation.
type IssuerItem struct {
	RRN, STAN, UpTrace, MID, TID, Kind string
	Amount                             int64
}

// approvedUpstream lists the transactions of settlement date d that the issuer approved and
// that still stand (not reversed): what its clearing file must list.
func (c *Config) approvedUpstream(ctx context.Context, db *pgxpool.Pool, d time.Time) ([]IssuerItem, error) {
	from, to := c.localDays(d)
	rows, err := db.Query(ctx, `SELECT rrn, stan, up_trace, mid, tid, kind, amount FROM txn
		WHERE local_day BETWEEN $1 AND $2 AND settle_date = $3 AND kind IN ('purchase', 'void', 'refund')
		  AND resp_code = '00' AND state <> 'R' AND went_upstream ORDER BY id`, from, to, dateOnly(d))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (IssuerItem, error) {
		var it IssuerItem
		err := r.Scan(&it.RRN, &it.STAN, &it.UpTrace, &it.MID, &it.TID, &it.Kind, &it.Amount)
		return it, err
	})
}

// byRRN finds one transaction by RRN (reconciliation of a file line the journal lacks for the date).
func byRRN(ctx context.Context, db *pgxpool.Pool, rrn string) (*IssuerItem, time.Time, string, error) {
	var it IssuerItem
	var sd time.Time
	var state string
	err := db.QueryRow(ctx, `SELECT rrn, stan, up_trace, mid, tid, kind, amount, settle_date, state FROM txn WHERE rrn = $1`, rrn).
		Scan(&it.RRN, &it.STAN, &it.UpTrace, &it.MID, &it.TID, &it.Kind, &it.Amount, &sd, &state)
	if err == pgx.ErrNoRows {
		return nil, sd, "", nil
	}
	return &it, sd, state, err
}

// UploadedTxn is a journal transaction found for a batch-upload item.
type UploadedTxn struct {
	Amount  int64
	PANHash []byte
	PAN     string // masked
	Kind    string
}

// batchTxn finds the approved financial transaction of a terminal batch with STAN stan.
func batchTxn(ctx context.Context, db *pgxpool.Pool, mid, tid, batch, stan string) (*UploadedTxn, error) {
	var u UploadedTxn
	// by the terminal's number and the batch and STAN's dkey range (journal migration 0024); a
	// batch or STAN that is not 6 digits has no range, and its upload item is not found. Newest
	// first by an expression: by id itself the planner may walk the terminal's rows through
	// (term, id) instead of probing the range in each day
	err := db.QueryRow(ctx, `SELECT amount, pan_hash, pan_masked, kind FROM txn
		WHERE term = (SELECT no FROM txn_term WHERE mid = $1 AND tid = $2)
		AND dkey BETWEEN txn_dkey($3, $4, '0000') AND txn_dkey($3, $4, '9999')
		AND mid = $1 AND tid = $2 AND batch = $3 AND stan = $4
		AND kind IN ('purchase', 'void', 'refund') AND resp_code = '00' ORDER BY id + 0 DESC LIMIT 1`, mid, tid, batch, stan).
		Scan(&u.Amount, &u.PANHash, &u.PAN, &u.Kind)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	return &u, err
}
