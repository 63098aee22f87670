package posswitch

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/metrics"
	"github.com/shoudan/shoudan/switch/settlement"
)

// signOn issues fresh working keys under the TMK and the next batch. They are pending until the
// terminal proves it holds them (its first request MACed with them, checkMAC): a sign-on carries
// no MAC, so it must not take the terminal's current keys away (see signon.go).
func (s *Switch) signOn(ctx context.Context, t *Txn) []byte {
	r := s.answer(t, rc.Approved)
	st, err := s.Journal.TerminalState(ctx, t.Req.MID, t.Req.TID)
	if err != nil {
		r.RespCode = rc.SystemMalfunction
		return s.encode(t, &pos.SignOnResponse{Answer: r.Answer}, r.RespCode)
	}
	if code, reason := s.admitSignOn(t, st); code != "" {
		metrics.SignOns.WithLabelValues("refused").Inc()
		t.Decision = Decision{Rule: "sign-on-limit", Code: code, Reason: reason}
		s.reject(t)
		r.RespCode = code
		return s.encode(t, &pos.SignOnResponse{Answer: r.Answer}, code)
	}
	tmk := t.Terminal.TMK
	if t.Terminal.DemoTMK {
		tmk = s.DemoTMK
	}
	var block, sealed []byte
	err = fmt.Errorf("terminal %s has no master key: run `shoudan keys import-tmk --tid %s`", t.Req.TID, t.Req.TID)
	if len(tmk.Wrapped) > 0 {
		block, sealed, err = s.Security.SignOn(tmk, t.F60.NMI)
	}
	if err != nil {
		s.Log.Error("sign-on refused: no working keys", "tid", t.Req.TID, "err", err.Error())
		t.Decision = Decision{Rule: "keys", Code: rc.SystemMalfunction, Reason: err.Error()}
		r.RespCode = rc.SystemMalfunction
		return s.encode(t, &pos.SignOnResponse{Answer: r.Answer}, r.RespCode)
	}
	batch := "000001"
	switch {
	case st != nil && len(st.Pending) > 0: // every sign-on opens a new batch, proven or not
		batch = nextBatch(st.Pending[0].Batch)
	case st != nil && st.Batch != "":
		batch = nextBatch(st.Batch)
	}
	p := journal.PendingSignOn{Batch: batch, KeysEnc: sealed, Operator: operatorCode(&t.Req), Source: t.Peer.String()}
	if err := s.Journal.PendSignOn(ctx, t.Req.MID, t.Req.TID, p); err != nil {
		r.RespCode = rc.SystemMalfunction
		return s.encode(t, &pos.SignOnResponse{Answer: r.Answer}, r.RespCode)
	}
	metrics.SignOns.WithLabelValues("pending").Inc()
	f60 := t.F60
	f60.Batch = batch
	r.Custom = f60.String()
	s.Log.Info("sign-on", "tid", t.Req.TID, "mid", t.Req.MID, "batch", batch, "layout", t.F60.NMI, "source", t.Peer.String())
	return s.encode(t, &pos.SignOnResponse{Answer: r.Answer, Keys: block}, rc.Approved)
}

func nextBatch(b string) string {
	var n int
	fmt.Sscanf(b, "%d", &n)
	return fmt.Sprintf("%06d", n%999999+1)
}

// management answers sign-off, echo and batch upload.
func (s *Switch) management(ctx context.Context, t *Txn) []byte {
	r := s.answer(t, rc.Approved)
	if t.Kind == pos.SignOff {
		// unMACed: honoured only from the address the terminal proved its keys from (signon.go)
		st, err := s.Journal.TerminalState(ctx, t.Req.MID, t.Req.TID)
		switch {
		case err != nil:
			r.RespCode = rc.SystemMalfunction
		case st.Current() && st.ProvenFrom != "" && !fromProvenAddress(st, t.Peer):
			s.ignore(t, "sign-off-ignored", fmt.Sprintf("sign-off from %s, not from %s where the terminal proved its keys: ignored", t.Peer.ip(), st.ProvenFrom))
		default:
			if err := s.Journal.SignOff(ctx, t.Req.MID, t.Req.TID); err != nil {
				r.RespCode = rc.SystemMalfunction
			}
		}
	}
	if t.Kind == pos.BatchUpload {
		s.checkUpload(ctx, t)
		return s.encode(t, &pos.BatchUploadResponse{Answer: r.Answer, Detail: t.Req.Detail}, r.RespCode)
	}
	return s.encode(t, &pos.ManagementResponse{Answer: r.Answer}, r.RespCode)
}

// status answers the last-transaction query from the journal.
func (s *Switch) status(ctx context.Context, t *Txn) []byte {
	r := s.answer(t, rc.Approved)
	r.PAN, r.Amount, r.SettleDate, r.IDs, r.Currency = "", 0, "", "", ""
	var batch, stan string
	if t.Req.Original != "" {
		if f61, err := pos.ParseF61(t.Req.Original); err == nil {
			batch, stan = f61.Batch, f61.STAN
		}
	}
	o, err := s.Journal.LastAsOf(ctx, day(t.Now), t.Req.MID, t.Req.TID, batch, stan)
	switch {
	case err != nil:
		r.RespCode = rc.SystemMalfunction
	case o == nil:
		r.RespCode = rc.NoOriginal
	default:
		r.Amount, r.RRN, r.AuthCode = o.Amount, o.RRN, o.AuthCode
		r.LocalTime, r.LocalDate = o.CreatedAt.In(t.Now.Location()).Format("150405"), o.CreatedAt.In(t.Now.Location()).Format("0102")
		r.Original = pos.F61{Batch: o.Batch, STAN: o.STAN, Date: o.LocalDay.Format("0102")}.String()
		r.Record = pos.StatusRecord{RespCode: o.RespCode, MTI: o.MTI, ProcCode: o.ProcCode, Type: o.Type, EntryMode: o.EntryMode, State: o.State}.Bytes()
	}
	return s.encode(t, &r, r.RespCode)
}

// settle reconciles the terminal's totals against the journal.
func (s *Switch) settle(ctx context.Context, t *Txn) []byte {
	r := s.answer(t, rc.Approved)
	term, err := pos.ParseSettlement48(t.Req.Detail)
	if err != nil {
		r.RespCode = rc.FormatError
		return s.encode(t, &pos.SettlementResponse{Answer: r.Answer}, r.RespCode)
	}
	tot, err := s.Journal.Totals(ctx, t.Req.MID, t.Req.TID, t.F60.Batch)
	if err != nil {
		r.RespCode = rc.SystemMalfunction
		return s.encode(t, &pos.SettlementResponse{Answer: r.Answer}, r.RespCode)
	}
	mine := pos.Totals{DebitAmount: tot.DebitAmount, DebitCount: tot.DebitCount, CreditAmount: tot.CreditAmount, CreditCount: tot.CreditCount}
	out := pos.Settlement48{Domestic: mine, Foreign: term.Foreign}
	out.Domestic.Reconcile = '1'
	if mine.DebitAmount != term.Domestic.DebitAmount || mine.DebitCount != term.Domestic.DebitCount ||
		mine.CreditAmount != term.Domestic.CreditAmount || mine.CreditCount != term.Domestic.CreditCount {
		out.Domestic.Reconcile = '2'
	}
	out.Foreign.Reconcile = '1'
	if err := s.Journal.BatchSettled(ctx, day(t.Now), t.Req.MID, t.Req.TID, t.F60.Batch); err != nil {
		s.Log.Warn("settled batch: sealed reversals not dropped", "tid", t.Req.TID, "batch", t.F60.Batch, "err", err)
	}
	s.Log.Info("settlement", "tid", t.Req.TID, "batch", t.F60.Batch, "balanced", out.Domestic.Reconcile == '1')
	return s.encode(t, &pos.SettlementResponse{Answer: r.Answer, Totals: out.String(), Currency: t.Req.Currency}, rc.Approved)
}

// reversal answers 00 unless the amount differs from the original (25); an approved original
// that went upstream is reversed upstream exactly once (its prepared reversal is armed).
func (s *Switch) reversal(ctx context.Context, t *Txn) []byte {
	o, err := s.Journal.ForReversal(ctx, day(t.Now), t.Req.MID, t.Req.TID, t.F60.Batch, t.Req.STAN)
	if err != nil {
		return s.declineNow(t, rc.SystemMalfunction, "journal", "journal unavailable")
	}
	if o != nil && o.Amount != t.Req.Amount {
		return s.declineNow(t, rc.NoOriginal, "reversal-amount", fmt.Sprintf("reversal amount %d differs from the original's %d", t.Req.Amount, o.Amount))
	}
	t.Orig = o
	var more []func(*pgx.Batch)
	if o != nil && o.State != journal.Reversed && o.State != journal.Declined {
		if o.WentUpstream { // arm before the state change, which drops the sealed reversal
			more = append(more, journal.ArmReversalOp(o.ID))
		}
		more = append(more, journal.SetStateOp(o.ID, journal.Reversed))
		if o.Kind == pos.Void.Name && o.State == journal.Approved && o.OrigID != nil {
			// undoing an approved void puts its purchase back: it can be voided, refunded and settled again
			more = append(more, journal.SetStateOp(*o.OrigID, journal.Approved))
		}
	}
	t.Decision = Decision{Rule: "reversal", Code: rc.Approved, Reason: "reversal accepted"}
	if o == nil {
		t.Decision.Reason = "nothing to reverse: accepted so the terminal can clear its pending reversal"
	}
	resp, ok := s.journalRequest(ctx, t, s.record(t, journal.Pending), more...)
	if !ok {
		return resp
	}
	return s.finish(ctx, t, journal.Approved, rc.Approved, t.Decision.Rule, t.Decision.Reason, nil)
}

func (s *Switch) declineNow(t *Txn, code, rule, reason string) []byte {
	t.Decision = Decision{Rule: rule, Code: code, Reason: reason}
	r := s.answer(t, code)
	return s.encode(t, &r, code)
}

// checkUpload reconciles the items of a 0320 detail upload (60.3 201) against the journal and
// records mismatches for 差错 handling; the upload is answered as before (the terminal has
// nothing to correct: the acquirer resolves the differences).
func (s *Switch) checkUpload(ctx context.Context, t *Txn) {
	if t.F60.NMI != "201" {
		return
	}
	// unMACed: only an upload from where the terminal proved its keys may record 差错 items
	// (otherwise anyone could fill batch_mismatch with phantom differences)
	if st, err := s.Journal.TerminalState(ctx, t.Req.MID, t.Req.TID); err != nil || !fromProvenAddress(st, t.Peer) {
		s.ignore(t, "batch-upload-unproven", fmt.Sprintf("batch upload from %s, not from %s where the terminal proved its keys: its items are not reconciled", t.Peer.ip(), orNone(st)))
		return
	}
	items, err := pos.ParseUpload48(t.Req.Detail)
	if err != nil {
		s.Log.Warn("batch upload not reconciled", "tid", t.Req.TID, "batch", t.F60.Batch, "err", err.Error())
		return
	}
	ms, err := settlement.CheckUpload(ctx, s.Journal.Pool, s.Journal.Vault.PANHash, t.Req.MID, t.Req.TID, t.F60.Batch, items)
	if err != nil {
		s.Log.Warn("batch upload not reconciled", "tid", t.Req.TID, "batch", t.F60.Batch, "err", err.Error())
		return
	}
	for _, m := range ms {
		s.Log.Warn("batch upload item does not match the journal", "tid", t.Req.TID, "mid", t.Req.MID, "batch", t.F60.Batch,
			"stan", m.STAN, "mismatch", m.Kind, "uploaded", m.Uploaded, "pan", m.PAN)
	}
}
