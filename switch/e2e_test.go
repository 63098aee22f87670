package posswitch_test

import (
	"strings"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

// The demo issuer's test cards.
const (
	goodPAN    = "6222021234567890123" // PIN 123456, 100000.00
	poorPAN    = "6222021234567890131" // PIN 111111, 10.00
	expiredPAN = "6222021234567890149" // expiry 2001
	lostPAN    = "6222021234567890156"
	stolenPAN  = "6222021234567890164"
	unknownPAN = "6222029999999999999"
)

var (
	good = device.Chip(goodPAN, "2912", "123456")
	tap  = device.Tap(goodPAN, "2912", "")
)

func code(t *testing.T, r *device.Result, err error) string {
	t.Helper()
	require.NoError(t, err)
	return r.Code()
}

// journaled returns the journal row of a response (by RRN) or of a terminal's key.
func lastRow(t *testing.T, s *switchtest.Switch, mid, tid string) *journal.Txn {
	t.Helper()
	rows, err := s.Journal.List(t.Context(), journal.Filter{MID: mid, TID: tid, Limit: 1, NewestFst: true})
	require.NoError(t, err)
	require.NotEmpty(t, rows)
	return rows[0]
}

// TestSignOnKeysVerify: the terminal decrypts F62 with its TMK, checks every check value, and
// its next request, MACed with the new key, is accepted; the approval's MAC verifies.
func TestSignOnKeysVerify(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	for _, nmi := range []string{"001", "003", "004"} {
		d := s.Terminal("10000001")
		d.NMI = nmi
		r, err := d.SignOn()
		require.NoError(t, err, "layout %s", nmi)
		require.Equal(t, rc.Approved, r.Code())
		var so pos.SignOnResponse
		require.NoError(t, r.Frame.Msg.Unmarshal(&so))
		wk, err := keys.ParseKeyBlock(switchtest.DemoTMK, nmi, so.Keys) // checks the KCVs
		require.NoError(t, err)
		assert.Len(t, wk.TAK, 8)
		assert.False(t, r.Frame.Has(64), "sign-on responses carry no MAC")
		assert.NotEqual(t, "000000", d.Batch, "sign-on opens a batch")
		p, err := d.Purchase(good, 1234)
		require.NoError(t, err)
		require.Equal(t, rc.Approved, p.Code(), "a request MACed with the new key is accepted")
		assert.True(t, p.MACValid, "approval carries a MAC under the new key")
		assert.Len(t, p.Resp.RRN, 12)
		assert.Len(t, p.Resp.AuthCode, 6)
	}
	// a second sign-on opens the next batch
	d := s.SignedOn("10000001")
	b1 := d.Batch
	_, err := d.SignOn()
	require.NoError(t, err)
	assert.NotEqual(t, b1, d.Batch)
}

// TestHappyPaths runs every transaction of protocol.md §3 once, successfully.
func TestHappyPaths(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")

	bal, err := d.Balance(good)
	require.Equal(t, rc.Approved, code(t, bal, err))
	assert.Contains(t, bal.Resp.Balance, "C", "F54 carries the balance")

	p, err := d.Purchase(good, 10000)
	require.Equal(t, rc.Approved, code(t, p, err))
	assert.Equal(t, int64(10000), p.Resp.Amount)
	assert.Equal(t, goodPAN, p.Resp.PAN, "F2 as sent")
	assert.Equal(t, "48020000", p.Resp.Acquirer)
	row, err := s.Journal.ByRRN(t.Context(), p.Resp.RRN)
	require.NoError(t, err)
	assert.Positive(t, row.IssuerMicros, "the issuer's round trip is journaled")
	assert.Less(t, row.IssuerMicros, p.Latency.Microseconds(), "and is part of the terminal's")

	q, err := d.Purchase(tap, 5000) // 双免
	require.Equal(t, rc.Approved, code(t, q, err))

	st, err := d.Status("", "")
	require.Equal(t, rc.Approved, code(t, st, err))
	rec, err := pos.ParseStatusRecord(st.Resp.Record)
	require.NoError(t, err)
	assert.Equal(t, pos.StatusRecord{RespCode: "00", MTI: "0200", ProcCode: "000000", Type: "22", EntryMode: "072", State: 'A'}, rec)
	assert.Equal(t, q.Resp.RRN, st.Resp.RRN)
	assert.Equal(t, int64(5000), st.Resp.Amount)

	v, err := d.Void(good, p)
	require.Equal(t, rc.Approved, code(t, v, err))
	st, err = d.Status(d.Batch, p.Sent.(*pos.PurchaseRequest).STAN)
	require.Equal(t, rc.Approved, code(t, st, err))
	rec, _ = pos.ParseStatusRecord(st.Resp.Record)
	assert.Equal(t, byte('V'), rec.State, "the voided purchase shows V")

	rv, err := d.Reversal(q, "98")
	require.Equal(t, rc.Approved, code(t, rv, err))
	rv2, err := d.Reversal(q, "98")
	require.Equal(t, rc.Approved, code(t, rv2, err), "a repeated reversal is answered 00 again")

	_, err = d.Echo()
	require.NoError(t, err)

	// settlement: the purchase was voided and the 双免 purchase reversed: debit 0, credit = the void
	set, err := d.Settle(pos.Totals{CreditAmount: 10000, CreditCount: 1})
	require.Equal(t, rc.Approved, code(t, set, err))
	s48, err := pos.ParseSettlement48(set.Resp.Totals)
	require.NoError(t, err)
	assert.Equal(t, byte('1'), s48.Domestic.Reconcile, "balanced: %+v", s48.Domestic)
	set, err = d.Settle(pos.Totals{DebitAmount: 999, DebitCount: 1})
	require.Equal(t, rc.Approved, code(t, set, err))
	s48, _ = pos.ParseSettlement48(set.Resp.Totals)
	assert.Equal(t, byte('2'), s48.Domestic.Reconcile)
	assert.Equal(t, int64(10000), s48.Domestic.CreditAmount, "the switch's totals come back when unbalanced")

	up, err := d.Upload([]pos.UploadItem{{CardClass: "00", STAN: p.Sent.(*pos.PurchaseRequest).STAN, PAN: goodPAN, Amount: 10000}}, "201")
	require.Equal(t, rc.Approved, code(t, up, err))

	off, err := d.SignOff()
	require.Equal(t, rc.Approved, code(t, off, err))
	after, err := d.Purchase(good, 100)
	require.Equal(t, rc.SignOnAgain, code(t, after, err), "signed off: must sign on again")

	// refund: an original from an earlier day (the switch's clock moved back for the purchase)
	d = s.SignedOn("10000001")
	s.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -3) }
	orig, err := d.Purchase(good, 30000)
	s.Switch.Now = time.Now
	require.Equal(t, rc.Approved, code(t, orig, err))
	day := time.Now().AddDate(0, 0, -3).Format("0102")
	r1, err := d.Refund(good, orig.Resp.RRN, day, 10000)
	require.Equal(t, rc.Approved, code(t, r1, err))
	r2, err := d.Refund(good, orig.Resp.RRN, day, 20000)
	require.Equal(t, rc.Approved, code(t, r2, err), "partial refunds add up to the original")
	r3, err := d.Refund(good, orig.Resp.RRN, day, 1)
	require.Equal(t, rc.InvalidAmount, code(t, r3, err), "nothing left to refund")
}

// TestRules: for every row of protocol.md §7 the real cause produces the documented code, and the
// journal keeps the rule and reason.
func TestRules(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})

	t.Run("97 unregistered terminal", func(t *testing.T) {
		d := s.Terminal("99999999")
		r, err := d.SignOn()
		require.Equal(t, rc.UnknownTerminal, code(t, r, err))
	})
	t.Run("97 production terminal on the test listener", func(t *testing.T) {
		d := s.Terminal("10000001", terminals.Test)
		r, err := d.SignOn()
		require.Equal(t, rc.UnknownTerminal, code(t, r, err))
	})
	t.Run("97 test terminal on the production listener", func(t *testing.T) {
		d := s.Terminal("20000001", terminals.Production)
		r, err := d.SignOn()
		require.Equal(t, rc.UnknownTerminal, code(t, r, err))
		ok := s.Terminal("20000001")
		r, err = ok.SignOn()
		require.Equal(t, rc.Approved, code(t, r, err), "and it works on its own listener")
	})
	t.Run("77 never signed on", func(t *testing.T) {
		d := s.Terminal("10000007")
		r, err := d.Purchase(good, 100)
		require.Equal(t, rc.SignOnAgain, code(t, r, err))
		assert.Equal(t, pos.ProcSignOn, r.Frame.Head().Processing(), "header d6 = 3")
	})
	t.Run("77 wrong batch", func(t *testing.T) {
		d := s.SignedOn("10000001")
		d.Batch = "000999"
		r, err := d.Purchase(good, 100)
		require.Equal(t, rc.SignOnAgain, code(t, r, err))
	})
	t.Run("A0 MAC", func(t *testing.T) {
		d := s.SignedOn("10000001")
		d.Keys.TAK = []byte("WRONGKEY")
		r, err := d.Purchase(device.Card{PAN: goodPAN, Expiry: "2912", EntryMode: "051"}, 100)
		require.Equal(t, rc.MACFailed, code(t, r, err))
		assert.False(t, r.Frame.Has(64), "declines carry no MAC")
	})
	t.Run("93 device", func(t *testing.T) {
		d := s.SignedOn("10000001")
		for name, f59 := range map[string]string{
			"no F59 A2":      pos.EncodeTLVs(pos.TLV{Tag: "A3", Value: "x"}),
			"serial differs": pos.Device{Type: "01", Serial: "SN-OTHER", Version: "3.2.1"}.F59(),
			"old SDK":        pos.Device{Type: "01", Serial: "SN-DEMO-0001", Version: "2.9.9"}.F59(),
			"bad check":      pos.Device{Type: "01", Serial: "SN-DEMO-0001", Version: "3.2.1", Random: "123456", CheckValue: "ABCDEF12"}.F59(),
		} {
			req, err := d.PurchaseRequest(good, 100)
			require.NoError(t, err)
			req.Device = f59
			r, err := d.Exchange(pos.Purchase, req)
			require.Equal(t, rc.Violation, code(t, r, err), name)
		}
		row := lastRow(t, s, "898310058120001", "10000001")
		assert.Equal(t, "device", row.Rule)
		assert.NotEmpty(t, row.Reason)
	})
	t.Run("96 merchant disabled", func(t *testing.T) {
		r, err := s.SignedOn("10000010").Purchase(good, 100)
		require.Equal(t, rc.SystemMalfunction, code(t, r, err))
	})
	t.Run("96 merchant not directly connected", func(t *testing.T) {
		r, err := s.SignedOn("10000004").Purchase(good, 100)
		require.Equal(t, rc.SystemMalfunction, code(t, r, err))
		assert.Equal(t, "merchant-trading", lastRow(t, s, "898310058120004", "10000004").Rule)
	})
	t.Run("95 no English name", func(t *testing.T) {
		r, err := s.SignedOn("10000002").Purchase(good, 100)
		require.Equal(t, rc.ReconcileError, code(t, r, err))
	})
	t.Run("03 F18 contradicts the merchant", func(t *testing.T) {
		d := s.SignedOn("10000001")
		req, err := d.PurchaseRequest(good, 100)
		require.NoError(t, err)
		req.MCC = "5999"
		r, err := d.Exchange(pos.Purchase, req)
		require.Equal(t, rc.InvalidMerchant, code(t, r, err))
		req, _ = d.PurchaseRequest(good, 100)
		req.MCC = "5812"
		r, err = d.Exchange(pos.Purchase, req)
		require.Equal(t, rc.Approved, code(t, r, err), "an F18 that matches is fine")
	})
	t.Run("95 cash MCC", func(t *testing.T) {
		r, err := s.SignedOn("10000003").Purchase(good, 100)
		require.Equal(t, rc.ReconcileError, code(t, r, err))
		assert.Equal(t, "cash-mcc", lastRow(t, s, "898310060110003", "10000003").Rule)
	})
	t.Run("95 双免 terminal not enabled", func(t *testing.T) {
		r, err := s.SignedOn("10000007").Purchase(tap, 100)
		require.Equal(t, rc.ReconcileError, code(t, r, err))
	})
	t.Run("95 双免 merchant not enabled", func(t *testing.T) {
		r, err := s.SignedOn("10000008").Purchase(tap, 100)
		require.Equal(t, rc.ReconcileError, code(t, r, err))
	})
	t.Run("03 双免 whitelist not yet effective", func(t *testing.T) {
		r, err := s.SignedOn("10000009").Purchase(tap, 100)
		require.Equal(t, rc.InvalidMerchant, code(t, r, err))
		r, err = s.SignedOn("10000009").Purchase(device.Tap(goodPAN, "2912", "123456"), 100)
		require.Equal(t, rc.Approved, code(t, r, err), "with a PIN it is an ordinary purchase")
	})
	t.Run("55 双免 over the no-PIN limit", func(t *testing.T) {
		d := s.SignedOn("10000001")
		r, err := d.Purchase(tap, 100001)
		require.Equal(t, rc.IncorrectPIN, code(t, r, err))
		r, err = d.Purchase(tap, 100000)
		require.Equal(t, rc.Approved, code(t, r, err), "exactly the limit passes")
	})
	t.Run("30 mandatory field missing", func(t *testing.T) {
		d := s.SignedOn("10000001")
		req, _ := d.PurchaseRequest(good, 100)
		req.Currency = ""
		r, err := d.Exchange(pos.Purchase, req)
		require.Equal(t, rc.FormatError, code(t, r, err))
	})
	t.Run("void 25 12 64 14 and entry mode", func(t *testing.T) {
		d := s.SignedOn("10000001")
		p, err := d.Purchase(good, 2000)
		require.Equal(t, rc.Approved, code(t, p, err))
		r, err := d.Void(device.Swipe(goodPAN, "2912", "123456"), p)
		require.Equal(t, rc.NoOriginal, code(t, r, err), "swipe void of a chip purchase")
		assert.Equal(t, "void-original", lastRow(t, s, "898310058120001", "10000001").Rule)

		other := *p
		sent := *p.Sent.(*pos.PurchaseRequest)
		sent.STAN = "999998"
		other.Sent = &sent
		r, err = d.Void(good, &other)
		require.Equal(t, rc.NoOriginal, code(t, r, err), "no such original")

		sent = *p.Sent.(*pos.PurchaseRequest)
		sent.Amount = 1999
		other.Sent = &sent
		r, err = d.Void(good, &other)
		require.Equal(t, rc.OriginalAmount, code(t, r, err), "amount differs")

		r, err = d.Void(device.Chip(poorPAN, "2912", "111111"), p)
		require.Equal(t, rc.InvalidCard, code(t, r, err), "another card")

		r, err = d.Void(good, p)
		require.Equal(t, rc.Approved, code(t, r, err))
		r, err = d.Void(good, p)
		require.Equal(t, rc.InvalidTxn, code(t, r, err), "already voided")
	})
	t.Run("refund 58 25 12 13 14", func(t *testing.T) {
		r, err := s.SignedOn("10000006").Refund(good, "000000000001", "0101", 100)
		require.Equal(t, rc.NotPermittedToTerm, code(t, r, err), "merchant may not refund")

		d := s.SignedOn("10000001")
		r, err = d.Refund(good, "999999999999", time.Now().AddDate(0, 0, -1).Format("0102"), 100)
		require.Equal(t, rc.NoOriginal, code(t, r, err), "no original")

		p, err := d.Purchase(good, 5000)
		require.Equal(t, rc.Approved, code(t, p, err))
		r, err = d.Refund(good, p.Resp.RRN, time.Now().Format("0102"), 100)
		require.Equal(t, rc.NoOriginal, code(t, r, err), "same day: void instead")

		s.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -400) }
		old, err := d.Purchase(good, 5000)
		s.Switch.Now = time.Now
		require.Equal(t, rc.Approved, code(t, old, err))
		r, err = d.Refund(good, old.Resp.RRN, time.Now().AddDate(0, 0, -400).Format("0102"), 100)
		require.Equal(t, rc.NoOriginal, code(t, r, err), "MMDD of 400 days ago names a day 35 days ago: no such original")

		s.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -2) }
		o2, err := d.Purchase(good, 5000)
		s.Switch.Now = time.Now
		require.Equal(t, rc.Approved, code(t, o2, err))
		mmdd := time.Now().AddDate(0, 0, -2).Format("0102")
		r, err = d.Refund(good, o2.Resp.RRN, mmdd, 5001)
		require.Equal(t, rc.InvalidAmount, code(t, r, err), "more than the original")
		r, err = d.Refund(device.Chip(poorPAN, "2912", "111111"), o2.Resp.RRN, mmdd, 100)
		require.Equal(t, rc.InvalidCard, code(t, r, err), "another card")
	})
	t.Run("refund outside the window 12", func(t *testing.T) {
		s2 := switchtest.Start(t, switchtest.Options{Edit: func(y string) string {
			return replace(t, y, "refund_window_days: 365", "refund_window_days: 1")
		}})
		d := s2.SignedOn("10000001")
		s2.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -3) }
		o, err := d.Purchase(good, 5000)
		s2.Switch.Now = time.Now
		require.Equal(t, rc.Approved, code(t, o, err))
		r, err := d.Refund(good, o.Resp.RRN, time.Now().AddDate(0, 0, -3).Format("0102"), 100)
		require.Equal(t, rc.InvalidTxn, code(t, r, err))
	})
	t.Run("duplicate: same bytes replayed, different content 94", func(t *testing.T) {
		d := s.SignedOn("10000001")
		p, err := d.Purchase(good, 777)
		require.Equal(t, rc.Approved, code(t, p, err))
		before := s.Sim.Received()["0200"]
		again, err := d.RoundTrip(p.Request)
		require.NoError(t, err)
		assert.Equal(t, rc.Approved, again.Code())
		assert.Equal(t, p.Resp.RRN, again.Resp.RRN, "the stored response")
		assert.Equal(t, p.Resp.AuthCode, again.Resp.AuthCode)
		assert.True(t, again.MACValid)
		assert.Equal(t, before, s.Sim.Received()["0200"], "not sent upstream again")

		req := *p.Sent.(*pos.PurchaseRequest)
		req.Amount = 778
		r, err := d.Exchange(pos.Purchase, &req)
		require.Equal(t, rc.Duplicate, code(t, r, err))
	})
	t.Run("reversal amount differs 25", func(t *testing.T) {
		d := s.SignedOn("10000001")
		p, err := d.Purchase(good, 4000)
		require.Equal(t, rc.Approved, code(t, p, err))
		bad := *p
		sent := *p.Sent.(*pos.PurchaseRequest)
		sent.Amount = 3999
		bad.Sent = &sent
		r, err := d.Reversal(&bad, "98")
		require.Equal(t, rc.NoOriginal, code(t, r, err))
		r, err = d.Reversal(p, "98")
		require.Equal(t, rc.Approved, code(t, r, err))
	})
	t.Run("reversal of nothing 00", func(t *testing.T) {
		d := s.SignedOn("10000001")
		req, _ := d.PurchaseRequest(good, 100) // never sent
		r, err := d.Reversal(&device.Result{Sent: req}, "98")
		require.Equal(t, rc.Approved, code(t, r, err))
	})
	t.Run("status query nothing found 25", func(t *testing.T) {
		d := s.SignedOn("10000011")
		r, err := d.Status("", "")
		require.Equal(t, rc.NoOriginal, code(t, r, err))
	})
}

// TestIssuerDeclines: each issuer decline reaches the terminal with its code; the issuer's
// limits by institution, MCC and merchant each produce 61.
func TestIssuerDeclines(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	d := s.SignedOn("10000001")
	for _, c := range []struct {
		name string
		card device.Card
		amt  int64
		want string
	}{
		{"funds", device.Chip(poorPAN, "2912", "111111"), 5000, rc.InsufficientFunds},
		{"wrong PIN", device.Chip(goodPAN, "2912", "654321"), 100, rc.IncorrectPIN},
		{"expired", device.Chip(expiredPAN, "2001", "123456"), 100, rc.ExpiredCard},
		{"unknown card", device.Chip(unknownPAN, "2912", "123456"), 100, rc.InvalidCard},
		{"lost", device.Chip(lostPAN, "2912", "123456"), 100, "41"},
		{"stolen", device.Chip(stolenPAN, "2912", "123456"), 100, "43"},
	} {
		r, err := d.Purchase(c.card, c.amt)
		require.Equal(t, c.want, code(t, r, err), c.name)
		row := lastRow(t, s, "898310058120001", "10000001")
		assert.Equal(t, "issuer", row.Rule, c.name)
		assert.Equal(t, byte(journal.Declined), row.State)
	}
	for _, c := range []struct{ name, tid string }{{"institution 48029999 over 100.00", "10000011"}, {"MCC 5944 over 200.00", "10000006"}, {"merchant over 300.00", "10000005"}} {
		d := s.SignedOn(c.tid)
		r, err := d.Purchase(good, 30001)
		require.Equal(t, rc.AmountLimit, code(t, r, err), c.name)
		r, err = d.Purchase(good, 9000)
		require.Equal(t, rc.Approved, code(t, r, err), c.name+": under the limit")
	}
}

func replace(t *testing.T, s, old, new string) string {
	t.Helper()
	out := strings.Replace(s, old, new, 1)
	require.NotEqual(t, s, out, "config edit %q found nothing to replace", old)
	return out
}
