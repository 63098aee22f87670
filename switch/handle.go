package posswitch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/issuerlink"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/spec/upstream"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/metrics"
	"github.com/shoudan/shoudan/terminals"
)

// Switch holds what a transaction needs on its way through.
type Switch struct {
	Registry *terminals.Holder
	Journal  *journal.Journal
	Link     *issuerlink.Link
	Security SecurityModule
	Log      *slog.Logger
	Now      func() time.Time
	// DemoTMK is the published demo TMK as imported into the module (for terminals configured
	// `tmk: demo`); the zero Block when the module has none.
	DemoTMK keys.Block
	// SignOnLimit bounds sign-ons from addresses a terminal has not proven its keys from (zero:
	// DefaultSignOnLimit).
	SignOnLimit SignOnLimit
	// Bind, when set, may refuse a registered terminal's frame by where it came from (source
	// address ranges, a TLS client certificate): a refusal is answered 97 at row 2.
	Bind    func(term *terminals.Terminal, p Peer) error
	signOns signOnLog
	// SettleDate is the settlement date of a transaction at t (the settlement cut-off: F15 and
	// txn.settle_date); nil = t's local date.
	SettleDate func(t time.Time) time.Time
	// TestClockOffset (nanoseconds) moves the business clock of test-environment transactions
	// only, so that QA can make a refund's original "on an earlier day" (admin /test-clock,
	// `shoudan pos --days-ago`). Production transactions never see it.
	TestClockOffset atomic.Int64
	// lastVia is, per issuer route, the journal id of the endpoint that carried its last request:
	// the write-ahead row names it, so that the outcome update, which names the endpoint that
	// did carry it, changes nothing at the row's end in the usual case (PostgreSQL then logs
	// only the changed middle of the row, not its sealed reversal).
	lastVia sync.Map
}

// settleDate is the settlement date of a transaction at now, as a date in now's location.
func (s *Switch) settleDate(now time.Time) time.Time {
	if s.SettleDate == nil {
		return day(now)
	}
	d := s.SettleDate(now)
	return time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, now.Location())
}

// now is the business clock for a transaction on env's listener.
func (s *Switch) now(env terminals.Environment) time.Time {
	t := s.Now()
	if env == terminals.Test {
		t = t.Add(time.Duration(s.TestClockOffset.Load()))
	}
	return t
}

// Handle takes one decoded request and returns the response frame (without LEN), or nil when
// nothing can be answered, and the transaction kind it was handled as ("unknown" when none).
func (s *Switch) Handle(ctx context.Context, env terminals.Environment, f *pos.Frame) ([]byte, string) {
	return s.HandleFrom(ctx, Peer{}, env, f)
}

// HandleFrom is Handle for a frame that came from peer (recorded with rejects and sign-ons).
func (s *Switch) HandleFrom(ctx context.Context, peer Peer, env terminals.Environment, f *pos.Frame) ([]byte, string) {
	t := &Txn{Env: env, Peer: peer, Now: s.now(env), Frame: f, Reg: s.Registry.Get(), start: time.Now()}
	resp := s.route(ctx, t)
	return resp, s.observe(t)
}

// Decide runs the acquirer checks (protocol.md §7, in Steps order) on a frame and returns the
// first decline, or a decision with an empty Code when every check passes. Nothing is journaled
// or sent upstream; the duplicate check (row 13), which is the journal's unique key, is not run.
func (s *Switch) Decide(ctx context.Context, env terminals.Environment, f *pos.Frame) Decision {
	t := &Txn{Env: env, Now: s.now(env), Frame: f, Reg: s.Registry.Get(), start: time.Now()}
	s.decide(ctx, t)
	return t.Decision
}

func (s *Switch) route(ctx context.Context, t *Txn) []byte {
	if !s.decide(ctx, t) {
		return s.decline(ctx, t)
	}
	switch t.Kind {
	case pos.SignOn:
		return s.signOn(ctx, t)
	case pos.SignOff, pos.Echo:
		return s.management(ctx, t)
	case pos.StatusQuery:
		return s.status(ctx, t)
	case pos.Settlement:
		return s.settle(ctx, t)
	case pos.BatchUpload:
		return s.management(ctx, t)
	case pos.Reversal:
		return s.reversal(ctx, t)
	}
	return s.financial(ctx, t)
}

// FormatError answers a frame that did not decode, when its head could be read, and records it
// with the rejects (from peer, on the env listener).
func (s *Switch) FormatError(env terminals.Environment, peer Peer, raw []byte, err error) []byte {
	var h pos.HeadField
	_, herr := h.Unpack(raw)
	claimedMTI := h.Head.MTI
	if herr != nil || len(claimedMTI) != 4 || claimedMTI[2]%2 == 1 {
		s.rejectRaw(string(env), peer, raw, claimedMTI, "no readable head (connection closed): "+err.Error())
		return nil
	}
	s.rejectRaw(string(env), peer, raw, claimedMTI, err.Error())
	m := pos.NewMessage()
	_ = spec.Marshal(m, &pos.Answer{Terminal: pos.Terminal{Head: h.Head.Reply(respMTI(claimedMTI), pos.ProcNone)}, RespCode: rc.FormatError})
	b, perr := pos.Encode(m, nil)
	if perr != nil {
		return nil
	}
	s.Log.Info("format error", "code", rc.FormatError, "source", peer.String(), "err", err.Error())
	return b
}

func respMTI(mti string) string { return mti[:2] + string(mti[2]+1) + mti[3:] }

// answer builds the common response fields.
func (s *Switch) answer(t *Txn, code string) pos.FinancialResponse {
	h := t.Frame.Head()
	proc := pos.ProcNone
	if code == rc.SignOnAgain {
		proc = pos.ProcSignOn
	}
	r := pos.FinancialResponse{Answer: pos.Answer{
		Terminal:  pos.Terminal{Head: h.Reply(respMTI(h.MTI), proc), STAN: t.Req.STAN, TID: t.Req.TID, MID: t.Req.MID, Custom: t.Req.Custom},
		LocalTime: t.Now.Format("150405"), LocalDate: t.Now.Format("0102"), RespCode: code,
	}}
	if t.Merchant != nil {
		r.Acquirer = t.Merchant.Acquirer
	}
	if t.Kind != nil && t.Kind.Financial {
		r.PAN, r.ProcCode, r.Amount, r.Cond, r.Currency = cardPAN(&t.Req), t.Req.ProcCode, t.Req.Amount, t.Req.Cond, t.Req.Currency
		r.SettleDate = s.settleDate(t.Now).Format("0102")
		if t.Merchant != nil {
			r.IDs = fmt.Sprintf("%-11.11s%-11.11s", "", t.Merchant.Acquirer)
		}
	}
	return r
}

// encode packs a response, with a MAC when the kind is MAC-protected and the code is 00.
func (s *Switch) encode(t *Txn, v any, code string) []byte {
	t.Code = code
	m, err := pos.Marshal(v)
	if err != nil {
		s.Log.Error("response does not marshal", "err", err)
		return nil
	}
	var mac pos.MACFunc
	if t.Kind != nil && t.Kind.MAC && code == rc.Approved && t.Keys != nil {
		mac = t.Keys.MAC
	}
	b, err := pos.Encode(m, mac)
	if err != nil {
		s.Log.Error("response does not encode", "err", err)
		return nil
	}
	return b
}

// decline journals an acquirer decline with its rule and reason, then answers it. A decline
// before authentication (§7 rows 1-4) is recorded with the rejects instead: it changes nothing.
func (s *Switch) decline(ctx context.Context, t *Txn) []byte {
	code := t.Decision.Code
	if Unauthenticated(t.Decision.Rule) {
		s.reject(t)
	} else if t.Kind != nil && t.Kind.Financial && t.Terminal != nil {
		rec := s.record(t, journal.Declined)
		rec.RespCode, rec.Rule, rec.Reason = code, t.Decision.Rule, t.Decision.Reason
		ok, err := s.Journal.Insert(ctx, rec)
		switch {
		case err != nil:
			s.Log.Warn("decline not journaled", "err", err)
		case !ok && t.Decision.Rule != journalDown.Rule:
			// the key is taken (row 13 comes before rows 14-20): a retransmission gets its stored
			// answer, although its original has changed since (voided, refunded); another request 94
			return s.duplicate(ctx, t, rec)
		}
	}
	if t.Kind != nil && (t.Kind == pos.SignOn || !t.Kind.Financial) {
		r := s.answer(t, code)
		return s.encode(t, &pos.ManagementResponse{Answer: r.Answer}, code)
	}
	r := s.answer(t, code)
	return s.encode(t, &r, code)
}

// observe writes the transaction's one log line (masked), counts it and returns its kind.
func (s *Switch) observe(t *Txn) string {
	kind := "unknown"
	if t.Kind != nil {
		kind = t.Kind.Name
	}
	rule := t.Decision.Rule
	if rule == "acquirer-checks" {
		rule = "approved-path"
	}
	metrics.Transactions.WithLabelValues(kind, t.Code).Inc()
	metrics.RuleHits.WithLabelValues(rule, t.Code).Inc()
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs, slog.String("kind", kind), slog.String("tid", t.Req.TID), slog.String("mid", t.Req.MID), slog.String("stan", t.Req.STAN),
		slog.String("batch", t.F60.Batch), slog.String("code", t.Code), slog.String("rule", t.Decision.Rule), slog.String("reason", t.Decision.Reason))
	if t.Kind != nil && t.Kind.Financial {
		attrs = append(attrs, slog.String("pan", spec.MaskPAN(cardPAN(&t.Req))), slog.Int64("amount", t.Req.Amount), slog.String("entry", t.Req.EntryMode))
	}
	if t.Record != nil {
		attrs = append(attrs, slog.String("rrn", t.Record.RRN))
	}
	if Unauthenticated(t.Decision.Rule) {
		attrs = append(attrs, slog.Bool("rejected", true), slog.String("source", t.Peer.String()))
	}
	attrs = append(attrs, slog.Float64("ms", float64(time.Since(t.start).Microseconds())/1000))
	s.Log.LogAttrs(context.Background(), slog.LevelInfo, "txn", attrs...)
	return kind
}

// cardPAN is the PAN from F2 or track 2.
func cardPAN(r *pos.Request) string {
	if r.PAN != "" {
		return r.PAN
	}
	for i, c := range r.Track2 {
		if c == '=' {
			return r.Track2[:i]
		}
	}
	return ""
}

// record is the journal row of a transaction: PAN masked and hashed, nothing else of the card.
func (s *Switch) record(t *Txn, state byte) *journal.Txn {
	pan := cardPAN(&t.Req)
	mcc := ""
	if t.Merchant != nil {
		mcc = t.Merchant.MCC
	}
	mti, _ := t.Frame.Msg.GetMTI()
	op := operatorCode(&t.Req)
	if op == "" && t.State != nil {
		op = t.State.Operator
	}
	serial, sdk, check := deviceInputs(t)
	return &journal.Txn{
		LocalDay: day(t.Now), SettleDate: s.settleDate(t.Now), Env: string(t.Env), MID: t.Req.MID, TID: t.Req.TID,
		Batch: t.F60.Batch, STAN: t.Req.STAN, MTI: mti, Kind: t.Kind.Name, ProcCode: t.Req.ProcCode, Amount: t.Req.Amount,
		EntryMode: t.Req.EntryMode, Type: t.F60.Type, PANMasked: spec.MaskPAN(pan), PANHash: s.Journal.Vault.PANHash(pan),
		CardOrg: "CUP", MCC: mcc, State: state, ReqHash: s.Journal.Vault.RequestHash(t.Frame.Raw), Trace: strings.Join(t.Passed, ","),
		Operator:  op,
		Inputs:    journal.Inputs{ReqMCC: t.Req.MCC, HasPIN: len(t.Req.PINBlock) > 0, DevSerial: serial, DevSDK: sdk, DevCheck: check},
		CreatedAt: t.Now,
	}
}

// operatorCode is F63.1 of a request (the operator code, e.g. "01"), blanks trimmed.
func operatorCode(r *pos.Request) string {
	if r.Operator == "" {
		return ""
	}
	return strings.TrimSpace(pos.ParseF63(r.Operator).Code)
}

// journalRequest is rule 13 and the write-ahead record in one: the insert either takes the
// transaction's key or finds it taken. A retransmission (same bytes) gets the stored response; a
// different request under the same key gets 94. rec is the record to write (s.record, then what
// the caller adds: the upstream trace and the sealed reversal).
func (s *Switch) journalRequest(ctx context.Context, t *Txn, rec *journal.Txn, more ...func(*pgx.Batch)) ([]byte, bool) {
	rec.Rule, rec.Reason = t.Decision.Rule, t.Decision.Reason
	if t.Orig != nil {
		rec.OrigID = &t.Orig.ID
	}
	if prev := s.acrossMidnight(ctx, t, rec); prev != nil {
		return s.retransmission(t, prev), false
	}
	ok, err := s.Journal.Insert(ctx, rec, more...)
	if err != nil {
		s.Log.Warn("write-ahead record not journaled: answering 96", "err", err)
		t.Decision = journalDown
		return s.decline(ctx, t), false
	}
	if ok {
		t.Record = rec
		return nil, true
	}
	return s.duplicate(ctx, t, rec), false
}

// duplicate answers a request whose key (day, MID, TID, batch, STAN, MTI) is taken (row 13): the
// stored response to a retransmission (same bytes from the MTI on), 94 to a different request.
func (s *Switch) duplicate(ctx context.Context, t *Txn, rec *journal.Txn) []byte {
	prev, err := s.Journal.ByKey(ctx, rec.LocalDay, rec.MID, rec.TID, rec.Batch, rec.STAN, rec.MTI)
	if err != nil || prev == nil {
		t.Decision = Decision{Rule: "journal", Code: rc.SystemMalfunction, Reason: "journal unavailable"}
		return s.decline(ctx, t)
	}
	if !equalHash(prev.ReqHash, rec.ReqHash) {
		t.Decision = Decision{Rule: "duplicate", Code: rc.Duplicate, Reason: fmt.Sprintf("batch %s STAN %s was already used today for a different request", rec.Batch, rec.STAN)}
		r := s.answer(t, rc.Duplicate)
		return s.encode(t, &r, rc.Duplicate)
	}
	return s.retransmission(t, prev)
}

// midnightWindow is how long after midnight a request is also compared with yesterday's
// journal: a terminal that retransmits a 23:59:59 request at 00:00:20 must get the answer it
// missed, not a second charge (rule 13's "today" would otherwise let it through).
const midnightWindow = 15 * time.Minute

// acrossMidnight returns yesterday's journal row with the same key and the same bytes, when the
// request arrives just after midnight. A different request under yesterday's key is a new
// request of the new day.
func (s *Switch) acrossMidnight(ctx context.Context, t *Txn, rec *journal.Txn) *journal.Txn {
	if t.Now.Sub(day(t.Now)) >= midnightWindow {
		return nil
	}
	prev, err := s.Journal.ByKey(ctx, rec.LocalDay.AddDate(0, 0, -1), rec.MID, rec.TID, rec.Batch, rec.STAN, rec.MTI)
	if err != nil || prev == nil || !equalHash(prev.ReqHash, rec.ReqHash) {
		return nil
	}
	return prev
}

// retransmission answers a request identical to one journaled before: the answer it was given,
// rebuilt from the journal's columns and the request itself (the same bytes, so the same STAN,
// TID, MID, F60, amount, PAN …; the PAN is never stored).
func (s *Switch) retransmission(t *Txn, prev *journal.Txn) []byte {
	if prev.State == journal.Pending { // the original is still in flight
		t.Decision = Decision{Rule: "duplicate", Code: "09", Reason: "the same request is still being processed"}
		r := s.answer(t, "09")
		return s.encode(t, &r, "09")
	}
	t.Decision = Decision{Rule: "duplicate", Code: prev.RespCode, Reason: "retransmission answered from the journal (" + prev.Rule + ": " + prev.Reason + ")"}
	r := s.answer(t, prev.RespCode)
	at := prev.CreatedAt.In(t.Now.Location())
	r.LocalTime, r.LocalDate = at.Format("150405"), at.Format("0102")
	if r.SettleDate != "" {
		r.SettleDate = prev.SettleDate.Format("0102")
	}
	r.RRN = prev.RRN
	if answeredByFinish[prev.Rule] {
		// what finish adds to an answer; an acquirer decline, or a row closed by recovery, is
		// answered with its recorded code and RRN
		r.AuthCode, r.Balance, r.Org = prev.AuthCode, prev.Balance, "CUP"
	}
	s.Log.Info("retransmission answered from the journal", "tid", prev.TID, "stan", prev.STAN, "code", prev.RespCode)
	return s.encode(t, &r, prev.RespCode)
}

// answeredByFinish are the rules finish records: their answers carried F38, F54 and F63.
var answeredByFinish = map[string]bool{"issuer": true, "issuer-link": true, "issuer-timeout": true, "pin": true, "reversal": true}

// journalDown is the decision when the write-ahead record cannot be made durable (or its RRN not
// be taken): fail closed.
var journalDown = Decision{Rule: "journal", Code: rc.SystemMalfunction, Reason: "the journal is unavailable: never approve without a durable record"}

// financial handles purchase, balance inquiry, void and refund: write-ahead, upstream, outcome.
// The write-ahead record is one statement: the request, its decision, the upstream trace and,
// when reversible, the sealed reversal that would undo it, so whatever happens next (timeout,
// crash, terminal reversal) the data to reverse it is already durable.
func (s *Switch) financial(ctx context.Context, t *Txn) []byte {
	up := s.upstreamRequest(t)
	reversible := t.Kind.Reversible
	rec := s.record(t, journal.Pending)
	rrn, err := s.Journal.NextRRN(ctx)
	if err != nil {
		t.Decision = journalDown
		return s.decline(ctx, t)
	}
	rec.RRN, up.RRN = rrn, rrn
	rec.UpTrace, rec.UpTime = up.Trace, up.Transmission
	t.Route = s.routeOf(ctx, t, up)
	if v, ok := s.lastVia.Load(t.Route); ok {
		rec.Via = v.(int16)
	}
	if reversible {
		rec.WentUpstream = true // from here on an unknown outcome is reversed
		rec.Reversal = s.sealReversal(ctx, reversalOf(up), t.Route, journal.RowOf(rec))
	}
	if resp, ok := s.journalRequest(ctx, t, rec); !ok {
		return resp
	}
	if len(t.Req.PINBlock) > 0 {
		zpb, zone, err := t.Keys.TranslatePIN(t.Req.PINBlock, cardPAN(&t.Req))
		if err != nil {
			return s.finish(ctx, t, journal.Declined, "99", "pin", "PIN block does not decrypt as format 0 under the terminal PIN key", nil)
		}
		up.PINBlock, up.SecCtl = zpb, upstream.SecurityControl(zone)
	}
	sent := time.Now()
	ans, via, err := s.Link.SendRoute(t.Route, up)
	t.IssuerRTT, t.Via = time.Since(sent), &via
	s.observeIssuer(t.IssuerRTT, err)
	switch {
	case errors.Is(err, issuerlink.ErrNoRoute):
		s.Log.Warn("issuer link: no route", "err", err.Error())
		return s.finish(ctx, t, journal.Declined, rc.IssuerDown, "issuer-link", "no route to the issuer (link down)", nil)
	case err != nil:
		s.Log.Warn("issuer link: no answer", "err", err.Error(), "trace", up.Trace)
		var more []func(*pgx.Batch)
		if reversible {
			more = append(more, journal.ArmReversalOp(t.Record.ID))
		}
		return s.finish(ctx, t, journal.TimedOut, rc.IssuerTimeout, "issuer-timeout", "no answer from the issuer in time: automatic reversal queued", nil, more...)
	}
	state := byte(journal.Declined)
	var more []func(*pgx.Batch)
	if ans.RespCode == rc.Approved {
		state = journal.Approved
		switch t.Kind {
		case pos.Void:
			more = append(more, journal.SetStateOp(t.Orig.ID, journal.Voided))
		case pos.Refund:
			more = append(more, journal.AddRefundedOp(t.Orig.ID, t.Req.Amount))
		}
	}
	return s.finish(ctx, t, state, ans.RespCode, "issuer", "issuer answered "+rc.Describe(ans.RespCode).English, ans, more...)
}

// finish makes the outcome durable, then builds the answer. If the outcome cannot be journaled
// the terminal gets 96 and an approval is reversed.
func (s *Switch) finish(ctx context.Context, t *Txn, state byte, code, rule, reason string, ans *upstream.Message, more ...func(*pgx.Batch)) []byte {
	t.Decision = Decision{Rule: rule, Code: code, Reason: reason}
	t.Trace = append(t.Trace, t.Decision)
	r := s.answer(t, code)
	r.RRN = t.Record.RRN
	if ans != nil {
		r.AuthCode = ans.AuthCode
		if t.Kind == pos.BalanceInquiry && code == rc.Approved {
			r.Balance = pos.Balance(ans.Amount)
		}
	}
	r.Org = "CUP"
	// an approval keeps its prepared reversal (the terminal may still reverse it), a timeout has
	// just armed it; any other outcome is final and drops it
	o := journal.Outcome{State: state, RespCode: code, Rule: rule, Reason: reason, AuthCode: r.AuthCode, Balance: r.Balance,
		WentUpstream: ans != nil || state == journal.TimedOut, KeepReversal: state == journal.Approved || state == journal.TimedOut,
		IssuerMicros: t.IssuerRTT.Microseconds()}
	if ans != nil {
		o.IssuerCode = ans.RespCode
	}
	if t.Via != nil {
		// the outcome matters more than its route: a route the journal cannot name (the
		// database refused a new one) is journaled as none
		if v, err := s.Journal.ViaID(ctx, journal.Route{Route: t.Via.Route, Endpoint: t.Via.Endpoint, Secondary: t.Via.Secondary}); err == nil {
			o.Via = v
			s.lastVia.Store(t.Via.Route, v)
		}
	}
	if err := s.Journal.Finish(ctx, t.Record.ID, o, more...); err != nil {
		s.Log.Error("outcome not journaled: answering 96", "id", t.Record.ID, "err", err)
		if state == journal.Approved {
			// best effort now; recovery arms it at the next start otherwise
			_ = s.Journal.Commit(context.Background(), journal.ArmReversalOp(t.Record.ID))
		}
		code = rc.SystemMalfunction
		r.RespCode, r.AuthCode = code, ""
	}
	return s.encode(t, &r, code)
}

// upstreamRequest maps a terminal request to the issuer dialect: F18 from the merchant, F32 the
// acquiring institution, F43 the merchant name, no track 3, and the 双免 flag when eligible.
func (s *Switch) upstreamRequest(t *Txn) *upstream.Message {
	mti, _ := t.Frame.Msg.GetMTI()
	trace, tm := s.Link.NextTrace()
	m := &upstream.Message{MTI: mti, PAN: cardPAN(&t.Req), ProcCode: t.Req.ProcCode, Amount: t.Req.Amount, Transmission: tm, Trace: trace,
		LocalTime: t.Now.Format("150405"), LocalDate: t.Now.Format("0102"), Expiry: t.Req.Expiry, MCC: t.Merchant.MCC,
		EntryMode: t.Req.EntryMode, CardSeq: t.Req.CardSeq, Cond: t.Req.Cond, Acquirer: t.Merchant.Acquirer, Forwarder: t.Merchant.Acquirer,
		Track2: t.Req.Track2, TID: t.Req.TID, MID: t.Req.MID, MerchantName: fmt.Sprintf("%-40.40s", t.Merchant.NameEN), Currency: t.Req.Currency,
		ICC: t.Req.ICC, Private: upstream.Private60("0000", qps(t))}
	if t.Kind == pos.BalanceInquiry {
		m.ProcCode, m.Amount = upstream.ProcBalance, 0
	}
	if t.Orig != nil {
		m.Original = upstream.Original90("0200", t.Orig.UpTrace, t.Orig.UpTime, t.Merchant.Acquirer, t.Merchant.Acquirer)
	}
	return m
}

// reversalOf is the 0420 that undoes an upstream request: no track, PIN or ICC script data.
func reversalOf(up *upstream.Message) *upstream.Message {
	r := *up
	r.MTI = "0420"
	r.Track2, r.PINBlock, r.SecCtl, r.PINMaxLen, r.ICC = "", nil, "", "", nil
	r.RespCode = "98"
	r.Private = upstream.Private60("4351", upstream.QPS(up.Private))
	r.Original = upstream.Original90(up.MTI, up.Trace, up.Transmission, up.Acquirer, up.Forwarder)
	return &r
}

// routeOf is the issuer route of a request: a void or refund goes where its original went (the
// issuer that holds it), anything else by its card's BIN.
func (s *Switch) routeOf(ctx context.Context, t *Txn, up *upstream.Message) string {
	if t.Orig != nil {
		if r, err := s.Journal.Route(ctx, t.Orig); err == nil && r != nil && s.Link.HasRoute(r.Route) {
			return r.Route
		}
	}
	return s.Link.RouteFor(up.PAN)
}

func (s *Switch) observeIssuer(rtt time.Duration, err error) {
	outcome := "answered"
	switch {
	case errors.Is(err, issuerlink.ErrNoRoute):
		outcome = "no_route"
	case err != nil:
		outcome = "timeout"
	}
	metrics.IssuerLatency.WithLabelValues(outcome).Observe(rtt.Seconds())
}
