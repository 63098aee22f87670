package posswitch

import (
	"context"
	"fmt"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
)

// 14–17: a void's original purchase: same day, same batch and STAN; same entry mode; approved and
// not voided or reversed; same amount and PAN.
func checkVoidOriginal(ctx context.Context, s *Switch, t *Txn) (string, string) {
	if t.Kind != pos.Void {
		return "", ""
	}
	f61, err := pos.ParseF61(t.Req.Original)
	if err != nil {
		return rc.FormatError, err.Error()
	}
	o, err := s.Journal.Original(ctx, day(t.Now), t.Req.MID, t.Req.TID, f61.Batch, f61.STAN, "0200", "purchase")
	if err != nil {
		return rc.SystemMalfunction, "journal unavailable"
	}
	if o == nil {
		return rc.NoOriginal, fmt.Sprintf("no purchase today with batch %s and STAN %s", f61.Batch, f61.STAN)
	}
	t.Orig = o
	if entry2(o.EntryMode) != entry2(t.Req.EntryMode) {
		return rc.NoOriginal, fmt.Sprintf("void entry mode %s does not match the original's %s (e.g. swipe void of a chip purchase)", t.Req.EntryMode, o.EntryMode)
	}
	if o.State != journal.Approved {
		return rc.InvalidTxn, fmt.Sprintf("original is not an approved, unvoided, unreversed purchase (state %c)", o.State)
	}
	if o.Amount != t.Req.Amount {
		return rc.OriginalAmount, fmt.Sprintf("void amount %d differs from the original %d", t.Req.Amount, o.Amount)
	}
	if pan := cardPAN(&t.Req); pan != "" && o.PANHash != nil && !equalHash(s.Journal.Vault.PANHash(pan), o.PANHash) {
		return rc.InvalidCard, "card differs from the original's"
	}
	return "", ""
}

// 18: the merchant may refund.
func checkRefundAllowed(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if t.Kind == pos.Refund && !t.Merchant.RefundAllowed {
		return rc.NotPermittedToTerm, "merchant is not allowed to refund"
	}
	return "", ""
}

// 19: the original purchase, by MID + RRN + date, from an earlier day.
func checkRefundOriginal(ctx context.Context, s *Switch, t *Txn) (string, string) {
	if t.Kind != pos.Refund {
		return "", ""
	}
	f61, err := pos.ParseF61(t.Req.Original)
	if err != nil || len(f61.Date) != 4 {
		return rc.FormatError, "field 61 must carry the original date MMDD"
	}
	od, err := originalDay(f61.Date, t.Now)
	if err != nil {
		return rc.FormatError, err.Error()
	}
	o, err := s.Journal.ForRefund(ctx, t.Req.MID, t.Req.RRN, od)
	if err != nil {
		return rc.SystemMalfunction, "journal unavailable"
	}
	if o == nil {
		return rc.NoOriginal, fmt.Sprintf("no purchase with RRN %s on %s", t.Req.RRN, od.Format("2006-01-02"))
	}
	t.Orig = o
	if refundAge(o.LocalDay, t.Now) <= 0 {
		return rc.NoOriginal, "the original is from today: void it instead of refunding"
	}
	return "", ""
}

// 19: the original within the refund window.
func checkRefundWindow(_ context.Context, _ *Switch, t *Txn) (string, string) {
	if t.Kind != pos.Refund {
		return "", ""
	}
	if refundAge(t.Orig.LocalDay, t.Now) > t.Reg.Rules.RefundWindowDays {
		return rc.InvalidTxn, fmt.Sprintf("the original is older than the %d-day refund window", t.Reg.Rules.RefundWindowDays)
	}
	return "", ""
}

// refundAge is how many days before now's business day the original's day lies.
func refundAge(orig, now time.Time) int {
	o := time.Date(orig.Year(), orig.Month(), orig.Day(), 0, 0, 0, 0, time.UTC)
	n := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	return int(n.Sub(o) / (24 * time.Hour))
}

// 19–20: the original approved, the amount within what is left, the same card.
func checkRefundAmount(_ context.Context, s *Switch, t *Txn) (string, string) {
	if t.Kind != pos.Refund {
		return "", ""
	}
	o := t.Orig
	if o.State != journal.Approved {
		return rc.InvalidTxn, fmt.Sprintf("original is not an approved purchase (state %c)", o.State)
	}
	if left := o.Amount - o.Refunded; t.Req.Amount > left {
		return rc.InvalidAmount, fmt.Sprintf("refund %d exceeds what is left to refund (%d of %d)", t.Req.Amount, left, o.Amount)
	}
	if pan := cardPAN(&t.Req); pan != "" && o.PANHash != nil && !equalHash(s.Journal.Vault.PANHash(pan), o.PANHash) {
		return rc.InvalidCard, "card differs from the original's"
	}
	return "", ""
}

func entry2(em string) string {
	if len(em) < 2 {
		return em
	}
	return em[:2]
}

// originalDay turns MMDD into a date within the last year.
func originalDay(mmdd string, now time.Time) (time.Time, error) {
	d, err := time.ParseInLocation("0102", mmdd, now.Location())
	if err != nil {
		return time.Time{}, fmt.Errorf("field 61.3: expected a date MMDD, found %q", mmdd)
	}
	od := time.Date(now.Year(), d.Month(), d.Day(), 0, 0, 0, 0, now.Location())
	if od.After(day(now)) {
		od = od.AddDate(-1, 0, 0)
	}
	return od, nil
}

func day(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}
