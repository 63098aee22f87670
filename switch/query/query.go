// Package query is the back office's view of the journal: the transaction query (filters,
// paging, newest first, the total count), streaming iteration for exports, and the summaries by
// trade day, settlement date, merchant, terminal or card organisation. The CLI (`shoudan txn`,
// `txn summary`) and the web console both use it; neither has a query of its own.
//
// Money is in fen (int64) throughout; spec/money parses and formats it.
package query

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/shoudan/shoudan/spec/money"
	"github.com/shoudan/shoudan/switch/journal"
)

// DefaultLimit is the page size when a Filter gives none (List only; Each streams everything).
const DefaultLimit = 100

// Filter selects transactions. Every field is optional; the zero Filter selects everything,
// newest first.
type Filter struct {
	// From and To bound the trade day (local_day, the day the terminal's transaction belongs
	// to), both inclusive; zero = open.
	From, To time.Time
	// SettleFrom and SettleTo bound the settlement date, both inclusive; zero = open.
	SettleFrom, SettleTo time.Time
	// MID is one merchant; MIDs any of several (a console user's merchants). Both may be set:
	// then a row must match both.
	MID  string
	MIDs []string
	TID  string
	// TIDs is any of several terminals (a merchant operator's assigned terminals); with TID
	// both must match.
	TIDs []string
	// Operator is the F63.1 operator code (a merchant operator sees only their own).
	Operator string
	// Last4 matches the card's last four digits; PAN the full card number, through the
	// journal's keyed hash (the PAN itself is never stored or compared in clear).
	Last4 string
	PAN   string
	// PANHash is the keyed hash of a full card number (Vault.PANHash), for front ends that must
	// not carry the number itself (the console's bookmarkable URLs carry the hash).
	PANHash []byte
	// MinAmount and MaxAmount bound the amount in fen, inclusive; 0 = open.
	MinAmount, MaxAmount int64
	// Code is the response code answered (e.g. "00", "55").
	Code string
	// Kind is purchase, void, refund, reversal or balance.
	Kind string
	// State is one or more state letters (see States), e.g. "A" or "VR".
	State    string
	RRN      string
	AuthCode string
	STAN     string
	CardOrg  string
	Env      string // production or test
	// AfterID selects rows journaled after the row with this id (`txn tail`).
	AfterID int64
	// Oldest lists oldest first; the default is newest first.
	Oldest bool
	// Limit is the page size (List: 0 = DefaultLimit; Each: 0 = no limit); Offset skips rows.
	Limit, Offset int
}

// Kinds are the transaction kinds the journal records (pos.Kind names).
var Kinds = []string{"purchase", "void", "refund", "reversal", "balance"}

// States are the journal's state letters and what each means.
var States = []struct {
	Letter  byte
	Meaning string
}{
	{journal.Pending, "pending: at the issuer, no outcome yet"},
	{journal.Approved, "approved (and still standing)"},
	{journal.Declined, "declined (by the switch's checks or by the issuer)"},
	{journal.Voided, "voided: an approved purchase later voided (消费撤销)"},
	{journal.Reversed, "reversed: the terminal reversed it (冲正), or an approved void/purchase was undone"},
	{journal.TimedOut, "timed out at the issuer: answered 98, reversal queued upstream"},
}

// StateName is the meaning of a state letter.
func StateName(s byte) string {
	for _, st := range States {
		if st.Letter == s {
			return st.Meaning
		}
	}
	return fmt.Sprintf("unknown state %q", s)
}

var (
	digits4 = regexp.MustCompile(`^[0-9]{4}$`)
	codeRe  = regexp.MustCompile(`^[0-9A-Z]{2}$`)
)

// where is the SQL condition and its arguments for f.
func where(f Filter, v *journal.Vault) (string, []any, error) {
	var conds []string
	var args []any
	add := func(cond string, val any) {
		args = append(args, val)
		conds = append(conds, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args))))
	}
	if f.AfterID > 0 {
		add("id > $?", f.AfterID)
	}
	day := func(t time.Time) string { return t.Format("2006-01-02") }
	switch {
	case !f.From.IsZero() && !f.To.IsZero() && day(f.From) == day(f.To):
		// one day as an equality: with the merchant, the (mid, local_day, id) index then gives
		// the rows newest first, and a page reads only its own rows (a range made PostgreSQL
		// walk the primary key back from the newest row instead)
		add("local_day = $?::date", day(f.From))
	default:
		if !f.From.IsZero() {
			add("local_day >= $?::date", day(f.From))
		}
		if !f.To.IsZero() {
			add("local_day <= $?::date", day(f.To))
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return "", nil, fmt.Errorf("date range: the last day %s is before the first %s", day(f.To), day(f.From))
	}
	if !f.SettleFrom.IsZero() {
		add("settle_date >= $?::date", day(f.SettleFrom))
	}
	if !f.SettleTo.IsZero() {
		add("settle_date <= $?::date", day(f.SettleTo))
	}
	// a merchant's rows are indexed by the hash of its MID (journal migration 0027)
	if f.MID != "" {
		add("mid = $?", f.MID)
		add("hashtext(mid) = hashtext($?)", f.MID)
	}
	if len(f.MIDs) > 0 {
		add("mid = ANY($?)", f.MIDs)
		// hashtext of each MID, written out: the planner folds them and sees how few rows
		hashes := make([]string, len(f.MIDs))
		for i, m := range f.MIDs {
			args = append(args, m)
			hashes[i] = fmt.Sprintf("hashtext($%d::text)", len(args))
		}
		conds = append(conds, "hashtext(mid) = ANY(ARRAY["+strings.Join(hashes, ", ")+"])")
	}
	// a terminal's rows are indexed by its number (txn_term, journal.TermNo), not its text
	if f.TID != "" {
		add("tid = $?", f.TID)
		add("term = ANY(ARRAY(SELECT no FROM txn_term WHERE tid = $?))", f.TID)
	}
	if len(f.TIDs) > 0 {
		add("tid = ANY($?)", f.TIDs)
		add("term = ANY(ARRAY(SELECT no FROM txn_term WHERE tid = ANY($?)))", f.TIDs)
	}
	if f.Last4 != "" {
		if !digits4.MatchString(f.Last4) {
			return "", nil, fmt.Errorf("card last 4: expected 4 digits, found %q", f.Last4)
		}
		add("right(pan_masked, 4) = $?", f.Last4)
	}
	if f.PAN != "" {
		if v == nil {
			return "", nil, errors.New("card number: no journal key to hash it with")
		}
		add("pan_hash = $?", v.PANHash(f.PAN))
	}
	if len(f.PANHash) > 0 {
		add("pan_hash = $?", f.PANHash)
	}
	if f.MinAmount < 0 || f.MaxAmount < 0 {
		return "", nil, fmt.Errorf("amount range: expected amounts of 0 or more, found %d..%d fen", f.MinAmount, f.MaxAmount)
	}
	if f.MinAmount > 0 {
		add("amount >= $?", f.MinAmount)
	}
	if f.MaxAmount > 0 {
		if f.MaxAmount < f.MinAmount {
			return "", nil, fmt.Errorf("amount range: the maximum %s is below the minimum %s", money.Format(f.MaxAmount), money.Format(f.MinAmount))
		}
		add("amount <= $?", f.MaxAmount)
	}
	if f.Code != "" {
		if !codeRe.MatchString(f.Code) {
			return "", nil, fmt.Errorf("response code: expected two characters like 00 or 55, found %q", f.Code)
		}
		add("resp_code = $?", f.Code)
	}
	if f.Kind != "" {
		ok := false
		for _, k := range Kinds {
			ok = ok || k == f.Kind
		}
		if !ok {
			return "", nil, fmt.Errorf("kind: expected one of %s, found %q", strings.Join(Kinds, ", "), f.Kind)
		}
		add("kind = $?", f.Kind)
	}
	if f.State != "" {
		var letters []string
		for i := 0; i < len(f.State); i++ {
			if strings.HasPrefix(StateName(f.State[i]), "unknown") {
				return "", nil, fmt.Errorf("state: expected letters of PADVRT, found %q", f.State)
			}
			letters = append(letters, f.State[i:i+1])
		}
		add("state = ANY($?)", letters)
	}
	for _, c := range []struct{ col, v string }{{"rrn", f.RRN}, {"auth_code", f.AuthCode}, {"stan", f.STAN}, {"card_org", f.CardOrg}, {"env", f.Env}, {"operator", f.Operator}} {
		if c.v != "" {
			add(c.col+" = $?", c.v)
		}
	}
	if f.Limit < 0 || f.Offset < 0 {
		return "", nil, fmt.Errorf("paging: expected a limit and offset of 0 or more, found %d and %d", f.Limit, f.Offset)
	}
	if len(conds) == 0 {
		return "true", args, nil
	}
	return strings.Join(conds, " AND "), args, nil
}

func order(f Filter) string {
	if f.Oldest {
		return " ORDER BY id"
	}
	return " ORDER BY id DESC"
}

// Page is one page of a query: its rows and how many rows the whole query matches.
type Page struct {
	Rows          []*journal.Txn
	Total         int64 // rows matching the filter, over all pages
	Offset, Limit int
}

// More reports whether rows beyond this page match.
func (p *Page) More() bool { return int64(p.Offset+len(p.Rows)) < p.Total }

// List returns one page of the transactions f selects and the total count.
func List(ctx context.Context, j *journal.Journal, f Filter) (*Page, error) {
	w, args, err := where(f, j.Vault)
	if err != nil {
		return nil, err
	}
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	p := &Page{Offset: f.Offset, Limit: f.Limit}
	if err := j.Pool.QueryRow(ctx, "SELECT count(*) FROM txn WHERE "+w, args...).Scan(&p.Total); err != nil {
		return nil, fmt.Errorf("%w: %v", journal.ErrUnavailable, err)
	}
	err = each(ctx, j, w, args, f, func(t *journal.Txn) error {
		p.Rows = append(p.Rows, t)
		return nil
	})
	return p, err
}

// Each streams the transactions f selects to fn, one row at a time (an export of any size in
// flat memory). A Limit of 0 streams every matching row. An error from fn stops the iteration
// and is returned.
func Each(ctx context.Context, j *journal.Journal, f Filter, fn func(*journal.Txn) error) error {
	w, args, err := where(f, j.Vault)
	if err != nil {
		return err
	}
	return each(ctx, j, w, args, f, fn)
}

func each(ctx context.Context, j *journal.Journal, w string, args []any, f Filter, fn func(*journal.Txn) error) error {
	q := "SELECT " + journal.TxnColumns + " FROM txn WHERE " + w + order(f)
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	if f.Offset > 0 {
		q += fmt.Sprintf(" OFFSET %d", f.Offset)
	}
	rows, err := j.Pool.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%w: %v", journal.ErrUnavailable, err)
	}
	defer rows.Close()
	for rows.Next() {
		t, err := journal.ScanTxn(rows)
		if err != nil {
			return err
		}
		if err := fn(t); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Newest returns the id of the newest journaled transaction (0 when none): where `txn tail`
// starts.
func Newest(ctx context.Context, j *journal.Journal) (int64, error) {
	var id int64
	if err := j.Pool.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM txn_request").Scan(&id); err != nil {
		return 0, fmt.Errorf("%w: %v", journal.ErrUnavailable, err)
	}
	return id, nil
}
