package query

import (
	"context"
	"fmt"
	"strings"

	"github.com/shoudan/shoudan/spec/money"
	"github.com/shoudan/shoudan/switch/journal"
)

// By is what a summary groups by.
type By string

// The groupings of a summary.
const (
	ByDay      By = "day"      // trade day (local_day)
	BySettle   By = "settle"   // settlement date
	ByMerchant By = "merchant" // MID, with the merchant's name
	ByTerminal By = "terminal" // TID
	ByOrg      By = "org"      // card organisation
)

// Groupings lists every By in the order the CLI and console offer them.
var Groupings = []By{ByDay, BySettle, ByMerchant, ByTerminal, ByOrg}

// ParseBy reads a grouping name.
func ParseBy(s string) (By, error) {
	for _, b := range Groupings {
		if string(b) == s {
			return b, nil
		}
	}
	names := make([]string, len(Groupings))
	for i, b := range Groupings {
		names[i] = string(b)
	}
	return "", fmt.Errorf("summary by: expected one of %s, found %q", strings.Join(names, ", "), s)
}

func (b By) column() string {
	switch b {
	case ByDay:
		return "local_day::text"
	case BySettle:
		return "settle_date::text"
	case ByMerchant:
		return "mid"
	case ByTerminal:
		return "tid"
	case ByOrg:
		return "card_org"
	}
	return ""
}

// Money is a count of transactions and their amount in fen.
type Money struct {
	Count  int64
	Amount int64
}

// Summary is one group's totals. The columns, exactly:
//
//   - Txns: every journaled row of the group (purchases, voids, refunds, reversal messages,
//     balance inquiries; approved, declined or pending). Txns = Approved + Declined + Pending +
//     Inquiries + ReversalMsgs.
//   - Approved: purchases, voids and refunds answered 00 (what terminals printed as done), even
//     if later voided or reversed. Approved = Purchases.Count + Voids.Count + Refunds.Count.
//     Reversal messages and balance inquiries are never counted as approvals: they move no money.
//   - Declined: purchases, voids and refunds answered anything else (the switch's checks, the
//     issuer, or 98 when the issuer did not answer in time).
//   - Pending: purchases, voids and refunds still at the issuer (no outcome yet).
//   - Purchases: purchases answered 00 (gross sales, before voids, refunds and reversals).
//   - Voids: voids answered 00 (消费撤销: a same-day purchase taken back).
//   - Refunds: refunds answered 00 (退货: an earlier day's purchase paid back, in part or whole).
//   - Reversals: approved purchases and voids later reversed by their terminal (冲正). The count
//     is of reversed transactions; the amount is what the reversals took off the net: a reversed
//     purchase's amount, less a reversed void's amount (undoing a void puts the purchase back).
//   - Net = Purchases − Voids − Refunds − Reversals (amounts): what the merchant is owed.
//   - Inquiries: balance inquiries; ReversalMsgs: reversal (0400) messages received, including
//     those that found nothing to reverse.
type Summary struct {
	Key  string // the day, settlement date, MID, TID or card organisation
	Name string // the merchant's name (by merchant, when a name is known)

	Txns, Approved, Declined, Pending int64
	Purchases, Voids, Refunds         Money
	Reversals                         Money
	Net                               int64
	Inquiries, ReversalMsgs           int64
}

// Summaries is a summary table: one row per group and the total over all of them.
type Summaries struct {
	By    By
	Rows  []Summary
	Total Summary
}

// Names gives a merchant's display name for a MID ("" when unknown).
type Names func(mid string) string

const financial = `kind IN ('purchase','void','refund')`

// Summarize groups the transactions f selects (its paging and order are ignored). names fills
// Summary.Name when grouping by merchant; it may be nil.
func Summarize(ctx context.Context, j *journal.Journal, f Filter, by By, names Names) (*Summaries, error) {
	col := by.column()
	if col == "" {
		_, err := ParseBy(string(by))
		return nil, err
	}
	w, args, err := where(f, j.Vault)
	if err != nil {
		return nil, err
	}
	q := `SELECT ` + col + ` AS k,
		count(*),
		count(*) FILTER (WHERE ` + financial + ` AND resp_code = '00'),
		count(*) FILTER (WHERE ` + financial + ` AND resp_code NOT IN ('00', '')),
		count(*) FILTER (WHERE ` + financial + ` AND resp_code = ''),
		count(*) FILTER (WHERE kind = 'purchase' AND resp_code = '00'),
		coalesce(sum(amount) FILTER (WHERE kind = 'purchase' AND resp_code = '00'), 0),
		count(*) FILTER (WHERE kind = 'void' AND resp_code = '00'),
		coalesce(sum(amount) FILTER (WHERE kind = 'void' AND resp_code = '00'), 0),
		count(*) FILTER (WHERE kind = 'refund' AND resp_code = '00'),
		coalesce(sum(amount) FILTER (WHERE kind = 'refund' AND resp_code = '00'), 0),
		count(*) FILTER (WHERE kind IN ('purchase','void') AND resp_code = '00' AND state = 'R'),
		coalesce(sum(CASE WHEN kind = 'void' THEN -amount ELSE amount END) FILTER (WHERE kind IN ('purchase','void') AND resp_code = '00' AND state = 'R'), 0),
		count(*) FILTER (WHERE kind = 'balance'),
		count(*) FILTER (WHERE kind = 'reversal')
		FROM txn WHERE ` + w + ` GROUP BY 1 ORDER BY 1`
	rows, err := j.Pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", journal.ErrUnavailable, err)
	}
	defer rows.Close()
	out := &Summaries{By: by, Total: Summary{Key: "total"}}
	for rows.Next() {
		var s Summary
		if err := rows.Scan(&s.Key, &s.Txns, &s.Approved, &s.Declined, &s.Pending, &s.Purchases.Count, &s.Purchases.Amount,
			&s.Voids.Count, &s.Voids.Amount, &s.Refunds.Count, &s.Refunds.Amount, &s.Reversals.Count, &s.Reversals.Amount,
			&s.Inquiries, &s.ReversalMsgs); err != nil {
			return nil, err
		}
		s.Net = s.Purchases.Amount - s.Voids.Amount - s.Refunds.Amount - s.Reversals.Amount
		if by == ByMerchant && names != nil {
			s.Name = names(s.Key)
		}
		out.Rows = append(out.Rows, s)
		out.Total.add(s)
	}
	return out, rows.Err()
}

func (t *Summary) add(s Summary) {
	t.Txns += s.Txns
	t.Approved += s.Approved
	t.Declined += s.Declined
	t.Pending += s.Pending
	for _, p := range []struct{ to, from *Money }{{&t.Purchases, &s.Purchases}, {&t.Voids, &s.Voids}, {&t.Refunds, &s.Refunds}, {&t.Reversals, &s.Reversals}} {
		p.to.Count += p.from.Count
		p.to.Amount += p.from.Amount
	}
	t.Net += s.Net
	t.Inquiries += s.Inquiries
	t.ReversalMsgs += s.ReversalMsgs
}

// Columns are the summary's column headings, in the order Cells gives them, with what each
// counts (the legend the CLI prints under the table and the console shows as titles).
var Columns = []struct{ Head, Meaning string }{
	{"txns", "every journaled row (approved, declined, pending, reversal messages, balance inquiries)"},
	{"approved", "purchases, voids and refunds answered 00 (reversals and inquiries are not approvals)"},
	{"declined", "purchases, voids and refunds answered with any other code (incl. 98: no answer from the issuer)"},
	{"purchases", "approved purchases: count"},
	{"purchase amt", "approved purchases: amount (gross sales)"},
	{"voids", "approved voids: count"},
	{"void amt", "approved voids: amount"},
	{"refunds", "approved refunds: count"},
	{"refund amt", "approved refunds: amount"},
	{"reversed", "approved purchases and voids that the terminal then reversed: count"},
	{"reversed amt", "amount the reversals took off (a reversed void puts its amount back)"},
	{"net", "purchase amt − void amt − refund amt − reversed amt: what the merchant is owed"},
}

// Cells are the row's values in the order of Columns, amounts in yuan.
func (s Summary) Cells() []string {
	n := func(v int64) string { return fmt.Sprint(v) }
	return []string{n(s.Txns), n(s.Approved), n(s.Declined), n(s.Purchases.Count), money.Format(s.Purchases.Amount), n(s.Voids.Count),
		money.Format(s.Voids.Amount), n(s.Refunds.Count), money.Format(s.Refunds.Amount), n(s.Reversals.Count), money.Format(s.Reversals.Amount), money.Format(s.Net)}
}
