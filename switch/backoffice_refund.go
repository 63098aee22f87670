package posswitch

import (
	"context"
	"fmt"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/spec/upstream"
	"github.com/shoudan/shoudan/switch/journal"
)

// Back-office refunds and voids (issue 16) are decided by the same step functions as a
// terminal's: a synthetic Txn is built from the journaled original (as what-if does) and run
// through Steps. Only the steps that authenticate a terminal's frame (rows 1-5: frame, terminal,
// sign-on, MAC, device) are skipped: a back-office request comes from an authenticated console
// user or a signed merchant API call, not from a terminal.

// backOfficeSkips are the steps that read a terminal's frame, keys or device.
var backOfficeSkips = map[string]bool{"frame": true, "terminal": true, "signed-on": true, "mac": true, "device": true}

// BackOffice is a back-office refund or void as the acquirer checks decided it.
type BackOffice struct {
	Kind     *pos.Kind
	Orig     *journal.Txn // the original purchase, as the checks read it
	Decision Decision     // Code "" when every check passed
	Passed   []string     // the checks passed, in order (the journal's trace)
}

// CheckBackOffice runs the acquirer checks of protocol.md §7 (rows 6-20) on a back-office refund
// or void of orig for amount at now. A void also needs its original's settlement date still open
// and equal to today's (a settled purchase is refunded, not voided).
func (s *Switch) CheckBackOffice(ctx context.Context, kind *pos.Kind, orig *journal.Txn, amount int64, now time.Time) BackOffice {
	reg := s.Registry.Get()
	t := &Txn{Env: "", Now: now, Kind: kind, Reg: reg, start: time.Now()}
	t.Req.MID, t.Req.TID, t.Req.Amount, t.Req.EntryMode = orig.MID, orig.TID, amount, orig.EntryMode
	t.Req.RRN = orig.RRN
	t.Req.Original = pos.F61{Batch: orig.Batch, STAN: orig.STAN, Date: orig.LocalDay.Format("0102")}.String()
	t.Merchant = reg.Merchant(orig.MID)
	t.Terminal = reg.Terminal(orig.TID, orig.MID)
	out := BackOffice{Kind: kind}
	if t.Merchant == nil {
		out.Decision = Decision{Rule: "merchant-trading", Code: rc.SystemMalfunction, Reason: "merchant " + orig.MID + " is not registered"}
		return out
	}
	for _, st := range Steps {
		if backOfficeSkips[st.Rule] {
			continue
		}
		code, reason := st.Check(ctx, s, t)
		if code != "" {
			out.Decision = Decision{Rule: st.Rule, Code: code, Reason: reason}
			out.Orig, out.Passed = t.Orig, t.Passed
			return out
		}
		t.Passed = append(t.Passed, st.Rule)
	}
	out.Orig, out.Passed = t.Orig, t.Passed
	if kind == pos.Void {
		if code, reason := s.voidSettlement(ctx, t.Orig, now); code != "" {
			out.Decision = Decision{Rule: "void-settlement", Code: code, Reason: reason}
			return out
		}
		out.Passed = append(out.Passed, "void-settlement")
	}
	out.Decision = Decision{Rule: journal.PassedRule, Reason: journal.PassedReason}
	return out
}

// voidSettlement: a back-office void is for a purchase of today's settlement date that is not
// yet settled (the terminal's void is same-day by its lookup already).
func (s *Switch) voidSettlement(ctx context.Context, o *journal.Txn, now time.Time) (string, string) {
	today := s.settleDate(now)
	if !sameDate(o.SettleDate, today) {
		return rc.InvalidTxn, fmt.Sprintf("the purchase belongs to settlement date %s, not today's %s: refund it instead",
			o.SettleDate.Format("2006-01-02"), today.Format("2006-01-02"))
	}
	var closed bool
	err := s.Journal.Pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM settle_day WHERE settle_date = $1)", o.SettleDate).Scan(&closed)
	if err != nil {
		return rc.SystemMalfunction, "journal unavailable"
	}
	if closed {
		return rc.InvalidTxn, fmt.Sprintf("settlement date %s is being or has been settled: refund it instead", o.SettleDate.Format("2006-01-02"))
	}
	return "", ""
}

func sameDate(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd
}

// SettleDateOf is the settlement date of a transaction made at now (the settlement cut-off).
func (s *Switch) SettleDateOf(now time.Time) time.Time { return s.settleDate(now) }

// BackOfficeUpstream is the upstream message of a back-office refund (0220 advice) or void
// (0200) of orig: no card data, which the switch never kept. The issuer finds the card by F90,
// the original's upstream MTI, trace, transmission time and acquirer, as it does for a
// terminal's void and reversal; F37 is the refund's own RRN, by which a repeat is recognised.
func (s *Switch) BackOfficeUpstream(kind *pos.Kind, orig *journal.Txn, amount int64, rrn string, now time.Time) *upstream.Message {
	m := s.Registry.Get().Merchant(orig.MID)
	trace, tm := s.Link.NextTrace()
	up := &upstream.Message{MTI: kind.MTI, ProcCode: kind.ProcCode, Amount: amount, Transmission: tm, Trace: trace,
		LocalTime: now.Format("150405"), LocalDate: now.Format("0102"), EntryMode: "012", Cond: "08", TID: orig.TID, MID: orig.MID,
		Currency: "156", RRN: rrn, Private: upstream.Private60("0000", false)}
	if kind == pos.Void {
		up.EntryMode = orig.EntryMode
	}
	if m != nil {
		up.MCC, up.Acquirer, up.Forwarder = m.MCC, m.Acquirer, m.Acquirer
		up.MerchantName = fmt.Sprintf("%-40.40s", m.NameEN)
	}
	up.Original = upstream.Original90("0200", orig.UpTrace, orig.UpTime, up.Acquirer, up.Forwarder)
	return up
}
