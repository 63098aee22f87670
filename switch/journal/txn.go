package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Transaction states.
const (
	Pending  = 'P'
	Approved = 'A'
	Declined = 'D'
	Voided   = 'V'
	Reversed = 'R'
	TimedOut = 'T'
)

// Txn is one journaled transaction. It holds no PIN block, track, CVV or ICC data, and the PAN
// only masked and as a keyed hash.
type Txn struct {
	ID int64 // carries its day: see DayOf
	// CreatedAt is when the switch took the transaction, by its business clock (the F12/F13 it
	// answered with); zero on Insert means the database's now().
	CreatedAt    time.Time
	LocalDay     time.Time
	SettleDate   time.Time
	Env          string
	MID, TID     string
	Batch, STAN  string
	MTI, Kind    string
	ProcCode     string
	Amount       int64
	EntryMode    string
	Type         string // 60.1
	PANMasked    string
	PANHash      []byte
	CardOrg      string
	MCC          string
	RRN          string
	AuthCode     string
	RespCode     string
	IssuerCode   string
	UpTrace      string // upstream F11 and F7 the transaction went out with (F90 of voids)
	UpTime       string
	State        byte
	WentUpstream bool
	Rule, Reason string
	ReqHash      []byte
	Balance      string // F54 of an approved balance inquiry
	OrigID       *int64
	Refunded     int64
	Trace        string // the acquirer checks passed, in order, comma-separated (stored as a bitmask)
	Operator     string // F63.1 operator code (the request's, else the terminal's sign-on operator)
	IssuerMicros int64  // the issuer's round trip (0: none)
	Inputs       Inputs // what the config-reading acquirer checks read (for what-if)
	// Via names the issuer route the transaction took (Journal.Route resolves it; 0: none).
	// Insert writes it as given: the route expected to carry it, which the outcome confirms.
	Via int16
	// Reversal is the sealed upstream 0420 that would undo the request, written with the
	// write-ahead record (never read back into Txn: only arming a reversal copies it to saf).
	Reversal []byte
}

// Inputs are the request values the acquirer checks that read the config look at, beyond the
// columns every transaction has (kind, entry mode, amount, terminal, merchant). No card secrets.
type Inputs struct {
	ReqMCC    string // F18 as sent ("" when absent)
	HasPIN    bool   // F52 was present
	DevSerial string // F59 A2 tag 02
	DevSDK    string // F59 A2 tag 05
	DevCheck  string // A2 tag 04: "" none, "G" good, "B" bad, "?" not verified, "-" A2 missing/malformed
}

const txnColumns = `id, created_at, local_day, settle_date, env, mid, tid, batch, stan, mti, kind, proc_code, amount,
	entry_mode, type_code, pan_masked, pan_hash, card_org, mcc, rrn, auth_code, resp_code, issuer_code, up_trace, up_time, state,
	went_upstream, rule, reason, req_hash, coalesce(balance, ''), orig_id, refunded, checks, coalesce(issuer_us, 0), operator,
	req_mcc, has_pin, dev_serial, dev_sdk, dev_check, coalesce(via, 0)`

// TxnColumns is the column list ScanTxn reads, for queries over txn outside this package
// (package switch/query).
const TxnColumns = txnColumns

// ScanTxn reads one row selected with TxnColumns.
func ScanTxn(row pgx.Row) (*Txn, error) { return scanTxn(row) }

func scanTxn(row pgx.Row) (*Txn, error) {
	var t Txn
	var state string
	var checks int64
	err := row.Scan(&t.ID, &t.CreatedAt, &t.LocalDay, &t.SettleDate, &t.Env, &t.MID, &t.TID, &t.Batch, &t.STAN, &t.MTI, &t.Kind,
		&t.ProcCode, &t.Amount, &t.EntryMode, &t.Type, &t.PANMasked, &t.PANHash, &t.CardOrg, &t.MCC, &t.RRN, &t.AuthCode,
		&t.RespCode, &t.IssuerCode, &t.UpTrace, &t.UpTime, &state, &t.WentUpstream, &t.Rule, &t.Reason, &t.ReqHash, &t.Balance, &t.OrigID, &t.Refunded, &checks, &t.IssuerMicros, &t.Operator,
		&t.Inputs.ReqMCC, &t.Inputs.HasPIN, &t.Inputs.DevSerial, &t.Inputs.DevSDK, &t.Inputs.DevCheck, &t.Via)
	if err != nil {
		return nil, err
	}
	t.State = state[0]
	t.Trace = ChecksTrace(checks)
	return &t, nil
}

// Insert journals a transaction (the write-ahead record, or a final decline) through group
// commit. It reports false, and fills nothing, when a transaction with the same key (MID, TID,
// batch, STAN, MTI, day) already exists. A transaction without an RRN is given one.
func (j *Journal) Insert(ctx context.Context, t *Txn, more ...func(*pgx.Batch)) (bool, error) {
	if t.RRN == "" {
		rrn, err := j.NextRRN(ctx)
		if err != nil {
			return false, err
		}
		t.RRN = rrn
	}
	if err := j.parts.ensure(ctx, j, t.LocalDay); err != nil {
		return false, err
	}
	term, err := j.TermNo(ctx, t.MID, t.TID)
	if err != nil {
		return false, err
	}
	inserted := false
	if t.State == Pending {
		j.floor.startInsert(t)
	}
	err = j.commitTxn(ctx, func(b *pgx.Batch) {
		queueInsert(b, t, term, &inserted)
		for _, m := range more {
			m(b)
		}
	})
	if t.State == Pending {
		// an error leaves the outcome unknown: keep it in the floor as if it were pending
		j.floor.endInsert(t, inserted || err != nil)
	}
	return inserted, err
}

func queueInsert(b *pgx.Batch, t *Txn, term int32, inserted *bool) {
	var created any
	if !t.CreatedAt.IsZero() {
		created = t.CreatedAt
	}
	// the request row and, in the same statement, its prepared reversal (none for a duplicate)
	rule, reason := writtenDecision(t.Rule, t.Reason)
	// what the txn view shows from dkey, the usual environment, kind, processing code and card
	// organisation, and empty codes are NULL (migrations 0026, 0028)
	var batch, stan, mti, dkey any = t.Batch, t.STAN, t.MTI, nil
	if k, ok := DupKey(t.Batch, t.STAN, t.MTI); ok {
		batch, stan, mti, dkey = nil, nil, nil, k
	}
	b.Queue(`WITH w AS (INSERT INTO txn_request (id, local_day, settle_date, env, mid, tid, batch, stan, mti, kind, proc_code, amount, entry_mode,
		type_code, pan_masked, pan_hash, card_org, mcc, auth_code, resp_code, issuer_code, state, went_upstream, rule, reason,
		req_hash, orig_id, checks, rrn, up_trace, up_time, operator, req_mcc, has_pin, dev_serial, dev_sdk, dev_check, via, created_at, term, dkey)
		VALUES (txn_id_base($1) + nextval('txn_id_seq'), $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29,$30,
		$32,$33,$34,$35,$36,$37,$38, coalesce($39, now()), $40, $41)
		ON CONFLICT DO NOTHING -- the day's duplicate key: (term, dkey), or the text columns when dkey is NULL
		RETURNING id, local_day, created_at),
		r AS (INSERT INTO txn_reversal (id, local_day, sealed) SELECT id, local_day, $31::bytea FROM w WHERE $31::bytea IS NOT NULL)
		SELECT id, created_at FROM w`,
		t.LocalDay, t.SettleDate, writtenEnv(t.Env), t.MID, t.TID, batch, stan, mti, unless(t.Kind, "purchase"), unless(t.ProcCode, "000000"), t.Amount, t.EntryMode,
		t.Type, t.PANMasked, t.PANHash, unless(t.CardOrg, "CUP"), t.MCC, nullStr(t.AuthCode), nullStr(t.RespCode), nullStr(t.IssuerCode), string(t.State), t.WentUpstream,
		rule, reason, t.ReqHash, t.OrigID, TraceChecks(t.Trace), t.RRN, t.UpTrace, t.UpTime, t.Reversal, t.Operator,
		nullStr(t.Inputs.ReqMCC), t.Inputs.HasPIN, t.Inputs.DevSerial, t.Inputs.DevSDK, t.Inputs.DevCheck, nullVia(t.Via), created,
		term, dkey,
	).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&t.ID, &t.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		*inserted = err == nil
		return err
	})
}

// rrnBlock hands out RRNs from a block of 1000 reserved with one nextval: unique across nodes
// and restarts (a restart skips the rest of its block), and no round trip per transaction.
type rrnBlock struct {
	mu        sync.Mutex
	next, end int64
}

// NextRRN returns a new retrieval reference number (F37, 12 digits).
func (j *Journal) NextRRN(ctx context.Context) (string, error) {
	r := &j.rrns
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next >= r.end {
		var block int64
		if err := j.Pool.QueryRow(ctx, "SELECT nextval('rrn_block')").Scan(&block); err != nil {
			return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		r.next, r.end = block*1000, block*1000+1000
	}
	n := r.next
	r.next++
	return fmt.Sprintf("%012d", n), nil
}

// PassedRule and PassedReason are the decision of a request that passed every acquirer check
// and goes upstream: what its request row says until the outcome says more.
const (
	PassedRule   = "acquirer-checks"
	PassedReason = "passed every acquirer check"
)

// writtenDecision is a request row's rule and reason as written: NULL for the decision most
// rows carry (PassedRule, PassedReason), which the txn view shows for NULL (43 B less of every
// request row and of its WAL).
func writtenDecision(rule, reason string) (any, any) {
	if rule == PassedRule && reason == PassedReason {
		return nil, nil
	}
	return rule, reason
}

// writtenEnv is a request row's environment as written: NULL for production (the txn view
// shows it).
func writtenEnv(env string) any { return unless(env, "production") }

// unless is v as a request row writes it: NULL when it is the usual value the txn view shows
// for NULL (migrations 0026, 0028).
func unless(v, usual string) any {
	if v == usual {
		return nil
	}
	return v
}

// outcomeRule and outcomeIssuerCode are an outcome's rule and issuer code as written: NULL for
// the issuer's answer (rule issuer), and then NULL for an issuer code equal to the response
// code (the txn view shows them, migration 0026).
func outcomeRule(rule string) any {
	if rule == "issuer" {
		return nil
	}
	return rule
}

func outcomeIssuerCode(o Outcome) any {
	if o.Rule == "issuer" && o.IssuerCode == o.RespCode {
		return nil
	}
	return o.IssuerCode
}

// IssuerApproved is the reason of an issuer's approval; an outcome row writes it as NULL (the
// txn view shows it for rule issuer): 25 bytes less in most outcome rows.
const IssuerApproved = "issuer answered Approved"

func outcomeReason(rule, reason string) any {
	if rule == "issuer" && reason == IssuerApproved {
		return nil
	}
	return reason
}

func nullInt(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

func nullVia(v int16) any {
	if v == 0 {
		return nil
	}
	return v
}

func nullStr(v string) any {
	if v == "" {
		return nil
	}
	return v
}

// Outcome is what becomes durable before the terminal is answered.
type Outcome struct {
	State        byte
	RespCode     string
	IssuerCode   string
	AuthCode     string
	Rule, Reason string
	WentUpstream bool // the request reached the issuer, or may have (no answer)
	// KeepReversal keeps the prepared reversal (approved, or timed out and armed); otherwise the
	// outcome is final and the sealed reversal is dropped.
	KeepReversal bool
	IssuerMicros int64  // the issuer's round trip, when it went upstream
	Balance      string // F54 of an approved balance inquiry
	// Via is the issuer route that carried the request (Journal.ViaID; 0: none).
	Via int16
}

// Finish records a transaction's outcome, together with the extra statements (original marked
// voided or reversed, refunded amount, an armed reversal) in the same commit.
func (j *Journal) Finish(ctx context.Context, id int64, o Outcome, more ...func(*pgx.Batch)) error {
	err := j.commitTxn(ctx, func(b *pgx.Batch) {
		FinishOp(id, o)(b)
		for _, m := range more {
			m(b)
		}
	})
	if err == nil { // a failed outcome leaves the row pending: recovery must still find it
		j.floor.finished(id)
	}
	return err
}

// FinishOp queues the outcome of one transaction: a row of txn_outcome (the request row is
// never updated), and the prepared reversal dropped when it can no longer be needed. The
// statements name the transaction's partitions (from its id), so they are planned once.
func FinishOp(id int64, o Outcome) func(*pgx.Batch) {
	return func(b *pgx.Batch) {
		// an update of the row if there is one (none, for a transaction finishing the first
		// time), else a plain INSERT: ON CONFLICT would cost a speculative insertion and its
		// confirmation record (48 B of WAL) for every transaction
		b.Queue(`WITH u AS (UPDATE `+OutcomeOf(id)+` SET at = now(), state = $2, resp_code = $3, issuer_code = $4, auth_code = $5, rule = $6,
				reason = $7, went_upstream = $8, balance = $9, issuer_us = $10, via = $11 WHERE id = $1 AND local_day = txn_day($1) RETURNING 1)
			INSERT INTO `+OutcomeOf(id)+` (id, local_day, at, state, resp_code, issuer_code, auth_code, rule, reason, went_upstream, balance, issuer_us, via)
			SELECT $1, txn_day($1), now(), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 WHERE NOT EXISTS (SELECT 1 FROM u)`,
			id, string(o.State), o.RespCode, outcomeIssuerCode(o), o.AuthCode, outcomeRule(o.Rule), outcomeReason(o.Rule, o.Reason), o.WentUpstream, nullStr(o.Balance),
			nullInt(o.IssuerMicros), nullVia(o.Via))
		if !o.KeepReversal {
			DropReversalOp(id)(b)
		}
	}
}

// DropReversalOp queues the deletion of a transaction's prepared reversal (it can no longer be
// reversed).
func DropReversalOp(id int64) func(*pgx.Batch) {
	return func(b *pgx.Batch) {
		b.Queue(`DELETE FROM `+ReversalOf(id)+` WHERE id = $1`, id)
	}
}

// SetStateOp queues a state change of an original (voided, reversed, or approved again when
// its void is reversed). A reversed transaction can never be reversed again: its sealed reversal
// is dropped (arm it first, in the same commit, when it must go upstream). A voided one keeps
// it: reversing the void puts the purchase back.
func SetStateOp(id int64, state byte) func(*pgx.Batch) {
	return func(b *pgx.Batch) {
		b.Queue(`INSERT INTO `+OutcomeOf(id)+` (id, local_day, at, state) VALUES ($1, txn_day($1), now(), $2)
			ON CONFLICT (id, local_day) DO UPDATE SET at = EXCLUDED.at, state = EXCLUDED.state`, id, string(state))
		if state == Reversed {
			DropReversalOp(id)(b)
		}
	}
}

// AddRefundedOp queues an increase of an original's refunded amount.
func AddRefundedOp(id, amount int64) func(*pgx.Batch) {
	return func(b *pgx.Batch) {
		b.Queue(`INSERT INTO `+OutcomeOf(id)+` AS o (id, local_day, at, refunded)
			SELECT id, local_day, now(), coalesce(refunded, 0) + $2 FROM `+PartitionOf(id)+` WHERE id = $1
			ON CONFLICT (id, local_day) DO UPDATE SET at = EXCLUDED.at, refunded = coalesce(o.refunded, EXCLUDED.refunded - $2) + $2`, id, amount)
	}
}

func (j *Journal) one(ctx context.Context, where string, args ...any) (*Txn, error) {
	t, err := scanTxn(j.Pool.QueryRow(ctx, "SELECT "+txnColumns+" FROM txn WHERE "+where, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return t, nil
}

// ByKey finds a transaction by its duplicate key.
func (j *Journal) ByKey(ctx context.Context, day time.Time, mid, tid, batch, stan, mti string) (*Txn, error) {
	return j.byKey(ctx, day, mid, tid, batch, stan, mti, "")
}

// byKey is the transaction with the duplicate key on day (with the extra condition more, whose
// parameters follow): through the day's (term, dkey) index, or its text key when the batch,
// STAN or MTI is not all digits.
func (j *Journal) byKey(ctx context.Context, day time.Time, mid, tid, batch, stan, mti, more string, moreArgs ...any) (*Txn, error) {
	term, ok, err := j.knownTerm(ctx, mid, tid)
	if err != nil || !ok {
		return nil, err
	}
	args := []any{day, mid, tid, batch, stan, mti, term}
	where := "term=$7 AND dkey IS NULL"
	if k, ok := DupKey(batch, stan, mti); ok {
		where, args = "term=$7 AND dkey=$8", append(args, k)
	}
	// the text columns too: the same rows, said twice for a reader
	where += " AND mid=$2 AND tid=$3 AND batch=$4 AND stan=$5 AND mti=$6 AND local_day=$1"
	if more != "" {
		where += fmt.Sprintf(" AND "+more, len(args)+1)
		args = append(args, moreArgs...)
	}
	return j.one(ctx, where, args...)
}

// ByID finds a transaction by id (in the partition the id names).
func (j *Journal) ByID(ctx context.Context, id int64) (*Txn, error) {
	return j.one(ctx, "id=$1 AND local_day=$2", id, DayOf(id))
}

// RRNLookback is how many days before today ByRRN looks. An RRN carries no date, and a query
// over every daily partition would read (and lock) a year of them.
const RRNLookback = 31

// ByRRN finds the newest transaction with this RRN journaled today (or tomorrow, for a business
// clock ahead) or in the RRNLookback days before: ByRRNBetween over those days.
func (j *Journal) ByRRN(ctx context.Context, rrn string) (*Txn, error) {
	today := time.Now()
	return j.ByRRNBetween(ctx, rrn, today.AddDate(0, 0, -RRNLookback), today.AddDate(0, 0, 1))
}

// ByRRNBetween finds the newest transaction with this RRN whose local day is from to to
// (inclusive): newest day first, one index probe in each day's partition, stopping at the
// first day that has it.
func (j *Journal) ByRRNBetween(ctx context.Context, rrn string, from, to time.Time) (*Txn, error) {
	first := dayNumber(from)
	for d := to; dayNumber(d) >= first; d = d.AddDate(0, 0, -1) {
		t, err := j.one(ctx, "rrn=$1 AND local_day=$2 ORDER BY id DESC LIMIT 1", rrn, d)
		if t != nil || err != nil {
			return t, err
		}
	}
	return nil, nil
}

// Original finds the financial request (0200 purchase or void) a void refers to: same MID and
// TID, batch and STAN, on day.
func (j *Journal) Original(ctx context.Context, day time.Time, mid, tid, batch, stan, mti string, kinds ...string) (*Txn, error) {
	// the key is unique within a day: no ORDER BY, which would let the planner walk the
	// terminal's rows newest first through (term, id) instead of probing (term, dkey)
	return j.byKey(ctx, day, mid, tid, batch, stan, mti, "kind = ANY($%d)", kinds)
}

// ReversalLookback is how many days before today a reversal's original is looked for. A
// reversal carries its original's STAN and batch but no date: a terminal that lost an answer at
// 23:59 reverses after midnight, and one switched off over a weekend reverses on Monday.
const ReversalLookback = 7

// ForReversal finds what a reversal reverses: the newest reversible request of the terminal with
// that batch and STAN (the reversal keeps its original's F11 and 60.2), on day or up to
// ReversalLookback days before (newest day first; each day is one index probe in its partition).
func (j *Journal) ForReversal(ctx context.Context, day time.Time, mid, tid, batch, stan string) (*Txn, error) {
	for back := 0; back <= ReversalLookback; back++ {
		t, err := j.byKey(ctx, day.AddDate(0, 0, -back), mid, tid, batch, stan, "0200", "kind = ANY($%d)", []string{"purchase", "void"})
		if t != nil || err != nil {
			return t, err
		}
	}
	return nil, nil
}

// ForRefund finds a refund's original purchase by MID, RRN and original local day (61.3): the
// day names the one partition to look in, however old.
func (j *Journal) ForRefund(ctx context.Context, mid, rrn string, day time.Time) (*Txn, error) {
	return j.one(ctx, "rrn=$2 AND mid=$1 AND local_day=$3 AND kind='purchase'", mid, rrn, day)
}

// Last finds the terminal's most recent financial transaction, or the one with batch and STAN:
// today's partition first, then each earlier day up to ReversalLookback, then all of them.
// Only authenticated requests count: since migration 0008 the unauthenticated ones (§7 rows 1-4)
// go to rejects, and the rule filter skips those an older switch journaled.
func (j *Journal) Last(ctx context.Context, mid, tid, batch, stan string) (*Txn, error) {
	return j.LastAsOf(ctx, time.Now(), mid, tid, batch, stan)
}

// LastAsOf is Last with today given (the switch's business clock).
func (j *Journal) LastAsOf(ctx context.Context, today time.Time, mid, tid, batch, stan string) (*Txn, error) {
	term, ok, err := j.knownTerm(ctx, mid, tid)
	if err != nil || !ok {
		return nil, err
	}
	where := "term=$1 AND mid=$2 AND tid=$3 AND kind IN ('purchase','void','refund','balance') AND rule NOT IN ('frame','terminal','signed-on','mac')"
	args := []any{term, mid, tid}
	if stan != "" {
		if lo, hi, ok := stanKeys(batch, stan); ok {
			where += fmt.Sprintf(" AND dkey BETWEEN %d AND %d", lo, hi)
		} else {
			where += " AND dkey IS NULL"
		}
		where += " AND batch=$4 AND stan=$5"
		args = append(args, batch, stan)
	}
	n := len(args) + 1
	// newest first; with a batch and STAN by an expression, so that the planner finds the few rows
	// through their dkey range and sorts them rather than walking the terminal's day through
	// (term, id) until one matches
	order := " ORDER BY id DESC LIMIT 1"
	if stan != "" {
		order = " ORDER BY id + 0 DESC LIMIT 1"
	}
	for back := 0; back <= ReversalLookback; back++ {
		t, err := j.one(ctx, where+fmt.Sprintf(" AND local_day=$%d", n)+order, append(args, today.AddDate(0, 0, -back))...)
		if t != nil || err != nil {
			return t, err
		}
	}
	return j.one(ctx, where+fmt.Sprintf(" AND local_day<$%d", n)+order, append(args, today.AddDate(0, 0, -ReversalLookback))...)
}

// BatchSettled drops the sealed reversals of a settled terminal batch: a terminal clears its
// pending reversal before it settles, so none of them can be needed any more.
func (j *Journal) BatchSettled(ctx context.Context, today time.Time, mid, tid, batch string) error {
	term, ok, err := j.knownTerm(ctx, mid, tid)
	if err != nil || !ok {
		return err
	}
	args := []any{mid, tid, term, today.AddDate(0, 0, -ReversalLookback), today}
	cond, odd := batchWhere("w.", batch, "$6")
	if odd {
		args = append(args, batch)
	}
	_, err = j.Pool.Exec(ctx, `DELETE FROM txn_reversal r USING txn_request w
		WHERE w.term=$3 AND `+cond+` AND w.mid=$1 AND w.tid=$2 AND w.local_day >= $4 AND w.local_day <= $5
		AND r.id = w.id AND r.local_day = w.local_day AND r.local_day >= $4 AND r.local_day <= $5`, args...)
	return err
}

// batchCond is batchWhere on the txn view, with the batch as $3 (which the caller always passes).
func batchCond(batch string) string {
	cond, _ := batchWhere("", batch, "$3")
	return cond
}

// batchWhere selects a terminal batch's rows by their dkey range, or, for a batch that is not 6
// digits (odd), the rows without one whose batch is the parameter param, which the caller then
// passes (a row with a dkey writes no batch).
func batchWhere(alias, batch, param string) (cond string, odd bool) {
	if lo, hi, ok := batchKeys(batch); ok {
		return fmt.Sprintf("%sdkey BETWEEN %d AND %d", alias, lo, hi), false
	}
	return fmt.Sprintf("%sdkey IS NULL AND %sbatch = %s", alias, alias, param), true
}

// BatchTotals are the settlement totals of a terminal batch (protocol.md §4): debit = approved,
// unreversed, unvoided purchases; credit = approved refunds and voids.
type BatchTotals struct {
	DebitAmount, CreditAmount int64
	DebitCount, CreditCount   int
}

// Totals sums a terminal batch from the journal.
func (j *Journal) Totals(ctx context.Context, mid, tid, batch string) (BatchTotals, error) {
	var t BatchTotals
	term, ok, err := j.knownTerm(ctx, mid, tid)
	if err != nil || !ok {
		return t, err
	}
	err = j.Pool.QueryRow(ctx, `SELECT
		coalesce(sum(amount) FILTER (WHERE kind='purchase' AND state='A'),0),
		count(*) FILTER (WHERE kind='purchase' AND state='A'),
		coalesce(sum(amount) FILTER (WHERE kind IN ('refund','void') AND state='A'),0),
		count(*) FILTER (WHERE kind IN ('refund','void') AND state='A')
		FROM txn WHERE term=$4 AND `+batchCond(batch)+` AND mid=$1 AND tid=$2 AND batch=$3`, mid, tid, batch, term).Scan(&t.DebitAmount, &t.DebitCount, &t.CreditAmount, &t.CreditCount)
	if err != nil {
		return t, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return t, nil
}

// Filter selects transactions for listing.
type Filter struct {
	From, To  time.Time
	MID, TID  string
	RespCode  string
	CardOrg   string
	STAN      string
	AfterID   int64
	Limit     int
	NewestFst bool
}

// List returns transactions matching f.
func (j *Journal) List(ctx context.Context, f Filter) ([]*Txn, error) {
	q := "SELECT " + txnColumns + " FROM txn WHERE id > $1"
	args := []any{f.AfterID}
	add := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(" AND "+cond, len(args))
	}
	if !f.From.IsZero() {
		add("local_day >= $%d", f.From)
	}
	if !f.To.IsZero() {
		add("local_day <= $%d", f.To)
	}
	for cond, v := range map[string]string{"mid = $%d": f.MID, "tid = $%d": f.TID, "resp_code = $%d": f.RespCode, "card_org = $%d": f.CardOrg, "stan = $%d": f.STAN} {
		if v != "" {
			add(cond, v)
		}
	}
	if f.MID != "" { // the merchant's rows by the hash of its MID (migration 0027)
		add("hashtext(mid) = hashtext($%d)", f.MID)
	}
	if f.TID != "" { // the terminal's rows by its number (TermNo)
		add("term = ANY(ARRAY(SELECT no FROM txn_term WHERE tid = $%d))", f.TID)
	}
	if f.NewestFst {
		q += " ORDER BY id DESC"
	} else {
		q += " ORDER BY id"
	}
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return j.many(ctx, q, args...)
}

// many runs a query over txn rows.
func (j *Journal) many(ctx context.Context, q string, args ...any) ([]*Txn, error) {
	rows, err := j.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []*Txn
	for rows.Next() {
		t, err := scanTxn(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
