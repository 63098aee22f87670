package query_test

import (
	"fmt"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/query"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

const (
	goodPAN = "6222021234567890123"
	poorPAN = "6222021234567890131" // balance 10.00
	m1      = "898310058120001"     // 演示餐厅, terminals 10000001 and 10000007
	m2      = "898310057320005"     // 限额商户, terminal 10000005
	m3      = "898310060110003"     // cash MCC 6011: every purchase is 95
)

var good = device.Chip(goodPAN, "2912", "123456")

// event is what a terminal did and what it was told: the independent record the summaries are
// checked against (computed here from the terminals' own results, never from SQL).
type event struct {
	day, mid, tid string
	settle        string // settlement date: the local day moved by the settlement cut-off
	kind          string
	amount        int64
	code          string
	reversed      bool // an approved purchase or void the terminal later reversed
}

type world struct {
	t      *testing.T
	s      *switchtest.Switch
	events []*event
}

func (w *world) record(d *device.Terminal, kind string, amount int64, r *device.Result, err error, day time.Time) *event {
	w.t.Helper()
	require.NoError(w.t, err)
	e := &event{day: day.Format("2006-01-02"), settle: w.s.Config.Settlement.Cutoff.Date(day).Format("2006-01-02"), mid: d.MID, tid: d.TID, kind: kind, amount: amount, code: r.Code()}
	w.events = append(w.events, e)
	return e
}

// expected computes a summary row from the events, by the definitions in query.Summary.
func expected(events []*event, key func(*event) string) map[string]query.Summary {
	out := map[string]query.Summary{}
	for _, e := range events {
		k := key(e)
		s := out[k]
		s.Key = k
		s.Txns++
		fin := e.kind == "purchase" || e.kind == "void" || e.kind == "refund"
		switch {
		case fin && e.code == rc.Approved:
			s.Approved++
		case fin:
			s.Declined++
		case e.kind == "balance":
			s.Inquiries++
		case e.kind == "reversal":
			s.ReversalMsgs++
		}
		if e.code == rc.Approved {
			switch e.kind {
			case "purchase":
				s.Purchases.Count++
				s.Purchases.Amount += e.amount
				s.Net += e.amount
			case "void":
				s.Voids.Count++
				s.Voids.Amount += e.amount
				s.Net -= e.amount
			case "refund":
				s.Refunds.Count++
				s.Refunds.Amount += e.amount
				s.Net -= e.amount
			}
			if e.reversed {
				s.Reversals.Count++
				if e.kind == "void" {
					s.Reversals.Amount -= e.amount
					s.Net += e.amount
				} else {
					s.Reversals.Amount += e.amount
					s.Net -= e.amount
				}
			}
		}
		out[k] = s
	}
	return out
}

// TestSummariesAddUp drives real terminals through a real switch on real PostgreSQL (purchases,
// declines, a void, reversals of a purchase and of a void, a refund of an earlier day's
// purchase, a balance inquiry) and checks every column of every grouping against the
// terminals' own record.
func TestSummariesAddUp(t *testing.T) {
	s := switchtest.Start(t, switchtest.Options{})
	w := &world{t: t, s: s}
	today := time.Now()
	earlier := today.AddDate(0, 0, -3)

	d1 := s.SignedOn("10000001")
	// the purchase of 12.34 and its void: the case that summed to −12.34
	p, err := d1.Purchase(good, 1234)
	w.record(d1, "purchase", 1234, p, err, today)
	require.Equal(t, rc.Approved, p.Code())
	v, err := d1.Void(good, p)
	w.record(d1, "void", 1234, v, err, today)
	require.Equal(t, rc.Approved, v.Code())

	// a purchase the terminal reverses
	p2, err := d1.Purchase(good, 5000)
	pe := w.record(d1, "purchase", 5000, p2, err, today)
	r, err := d1.Reversal(p2, "98")
	w.record(d1, "reversal", 5000, r, err, today)
	require.Equal(t, rc.Approved, r.Code())
	pe.reversed = true

	// a void the terminal reverses: the purchase stands again
	p3, err := d1.Purchase(good, 700)
	w.record(d1, "purchase", 700, p3, err, today)
	v3, err := d1.Void(good, p3)
	ve := w.record(d1, "void", 700, v3, err, today)
	require.Equal(t, rc.Approved, v3.Code())
	r3, err := d1.Reversal(v3, "98")
	w.record(d1, "reversal", 700, r3, err, today)
	require.Equal(t, rc.Approved, r3.Code())
	ve.reversed = true

	// declines: 双免 over the limit (55), the issuer's insufficient funds (51)
	q, err := d1.Purchase(device.Tap(goodPAN, "2912", ""), 120000)
	w.record(d1, "purchase", 120000, q, err, today)
	require.Equal(t, rc.IncorrectPIN, q.Code())
	poor, err := d1.Purchase(device.Chip(poorPAN, "2912", "111111"), 5000)
	w.record(d1, "purchase", 5000, poor, err, today)
	require.NotEqual(t, rc.Approved, poor.Code())

	// a balance inquiry: journaled, approved, but not an approval of money
	b, err := d1.Balance(good)
	w.record(d1, "balance", 0, b, err, today)
	require.Equal(t, rc.Approved, b.Code())

	// a refund of an earlier day's purchase (the switch's clock moved back for the purchase)
	d7 := s.SignedOn("10000007")
	s.Switch.Now = func() time.Time { return earlier }
	op, err := d7.Purchase(good, 30000)
	s.Switch.Now = time.Now
	w.record(d7, "purchase", 30000, op, err, earlier)
	require.Equal(t, rc.Approved, op.Code())
	rf, err := d7.Refund(good, op.Resp.RRN, earlier.Format("0102"), 10000)
	w.record(d7, "refund", 10000, rf, err, today)
	require.Equal(t, rc.Approved, rf.Code())

	d2 := s.Terminal("10000005")
	d2.Operator = "07"
	so, err := d2.SignOn()
	require.NoError(t, err)
	require.Equal(t, rc.Approved, so.Code())
	p4, err := d2.Purchase(good, 2000)
	w.record(d2, "purchase", 2000, p4, err, today)
	require.Equal(t, rc.Approved, p4.Code())

	d3 := s.SignedOn("10000003")
	cash, err := d3.Purchase(good, 500)
	w.record(d3, "purchase", 500, cash, err, today)
	require.Equal(t, rc.ReconcileError, cash.Code())

	names := func(mid string) string { return s.Registry.Get().Merchant(mid).Name }
	for _, g := range []struct {
		by  query.By
		key func(*event) string
	}{
		{query.ByDay, func(e *event) string { return e.day }},
		{query.BySettle, func(e *event) string { return e.settle }},
		{query.ByMerchant, func(e *event) string { return e.mid }},
		{query.ByTerminal, func(e *event) string { return e.tid }},
		{query.ByOrg, func(*event) string { return "CUP" }},
	} {
		t.Run(string(g.by), func(t *testing.T) {
			got, err := query.Summarize(t.Context(), s.Journal, query.Filter{}, g.by, names)
			require.NoError(t, err)
			want := expected(w.events, g.key)
			require.Len(t, got.Rows, len(want))
			var total query.Summary
			for _, row := range got.Rows {
				exp, ok := want[row.Key]
				require.True(t, ok, "unexpected group %q", row.Key)
				if g.by == query.ByMerchant {
					assert.Equal(t, names(row.Key), row.Name, "merchant names are shown")
					exp.Name = row.Name
				}
				assert.Equal(t, exp, row, "group %s", row.Key)
				assert.Equal(t, row.Txns, row.Approved+row.Declined+row.Pending+row.Inquiries+row.ReversalMsgs, "txns add up")
				assert.Equal(t, row.Approved, row.Purchases.Count+row.Voids.Count+row.Refunds.Count, "approved = purchases + voids + refunds")
				total.Txns += exp.Txns
				total.Net += exp.Net
				total.Purchases.Amount += exp.Purchases.Amount
			}
			assert.Equal(t, total.Txns, got.Total.Txns)
			assert.Equal(t, total.Net, got.Total.Net)
			assert.Equal(t, total.Purchases.Amount, got.Total.Purchases.Amount)
		})
	}

	// the merchant of the 12.34 purchase and its void: purchases 1, voids 1, net 0 for that pair
	one, err := query.Summarize(t.Context(), s.Journal, query.Filter{TID: "10000001", MinAmount: 1234, MaxAmount: 1234}, query.ByMerchant, names)
	require.NoError(t, err)
	require.Len(t, one.Rows, 1)
	assert.Equal(t, query.Money{Count: 1, Amount: 1234}, one.Rows[0].Purchases)
	assert.Equal(t, query.Money{Count: 1, Amount: 1234}, one.Rows[0].Voids)
	assert.Equal(t, int64(0), one.Rows[0].Net)
	assert.Equal(t, "演示餐厅", one.Rows[0].Name)
	// by merchant: M1's net is 12.34−12.34 + 50−50 + 7−7+7 + 300−100 = 207.00
	byM, err := query.Summarize(t.Context(), s.Journal, query.Filter{MID: m1}, query.ByMerchant, nil)
	require.NoError(t, err)
	require.Len(t, byM.Rows, 1)
	assert.Equal(t, int64(20700), byM.Rows[0].Net)
	assert.Equal(t, "", byM.Rows[0].Name, "no names without a lookup")

	t.Run("list", func(t *testing.T) {
		ctx := t.Context()
		all, err := query.List(ctx, s.Journal, query.Filter{Limit: 1000})
		require.NoError(t, err)
		require.Equal(t, int64(len(w.events)), all.Total)
		require.Len(t, all.Rows, len(w.events))
		for i := 1; i < len(all.Rows); i++ {
			assert.Greater(t, all.Rows[i-1].ID, all.Rows[i].ID, "newest first")
		}
		assert.False(t, all.More())

		page, err := query.List(ctx, s.Journal, query.Filter{Limit: 3, Offset: 3})
		require.NoError(t, err)
		assert.Equal(t, all.Total, page.Total, "the total counts every page")
		require.Len(t, page.Rows, 3)
		assert.Equal(t, all.Rows[3].ID, page.Rows[0].ID)
		assert.True(t, page.More())

		old, err := query.List(ctx, s.Journal, query.Filter{Oldest: true, Limit: 1})
		require.NoError(t, err)
		assert.Equal(t, all.Rows[len(all.Rows)-1].ID, old.Rows[0].ID)

		count := func(f query.Filter) int64 {
			t.Helper()
			p, err := query.List(ctx, s.Journal, f)
			require.NoError(t, err)
			n := int64(0)
			require.NoError(t, query.Each(ctx, s.Journal, f, func(*journal.Txn) error { n++; return nil }))
			if f.Limit == 0 {
				assert.Equal(t, p.Total, n, "Each streams every row List counts")
			}
			return p.Total
		}
		want := func(pred func(*event) bool) int64 {
			n := int64(0)
			for _, e := range w.events {
				if pred(e) {
					n++
				}
			}
			return n
		}
		assert.Equal(t, want(func(e *event) bool { return e.mid == m1 }), count(query.Filter{MID: m1}))
		assert.Equal(t, want(func(e *event) bool { return e.mid == m1 || e.mid == m2 }), count(query.Filter{MIDs: []string{m1, m2}}))
		assert.Equal(t, want(func(e *event) bool { return e.tid == "10000007" }), count(query.Filter{TID: "10000007"}))
		assert.Equal(t, want(func(e *event) bool { return e.kind == "void" }), count(query.Filter{Kind: "void"}))
		assert.Equal(t, want(func(e *event) bool { return e.code == rc.IncorrectPIN }), count(query.Filter{Code: "55"}))
		assert.Equal(t, want(func(e *event) bool { return e.amount >= 5000 && e.amount <= 30000 }), count(query.Filter{MinAmount: 5000, MaxAmount: 30000}))
		assert.Equal(t, want(func(e *event) bool { return e.day == earlier.Format("2006-01-02") }), count(query.Filter{From: earlier, To: earlier}))
		assert.Equal(t, want(func(e *event) bool { return e.day == today.Format("2006-01-02") }), count(query.Filter{From: today}))
		assert.Equal(t, want(func(e *event) bool { return e.mid == m1 })-1, count(query.Filter{Last4: "0123", MID: m1}), "every M1 row but one is of the good card")
		assert.Equal(t, int64(1), count(query.Filter{PAN: poorPAN}), "the full PAN through the keyed hash")
		assert.Equal(t, int64(0), count(query.Filter{PAN: "6222029999999999999"}))
		assert.Equal(t, int64(2), count(query.Filter{State: "R"}), "the reversed purchase and the reversed void")
		assert.Equal(t, int64(1), count(query.Filter{State: "V"}), "the voided 12.34 (the 7.00's void was reversed: that purchase stands again)")
		assert.Equal(t, int64(1), count(query.Filter{RRN: op.Resp.RRN}))
		assert.Equal(t, want(func(e *event) bool { return e.tid == "10000005" }), count(query.Filter{Operator: "07"}), "F63.1 of the sign-on")
		assert.Equal(t, int64(1), count(query.Filter{RRN: p3.Resp.RRN, State: "A"}), "reversing its void put the 7.00 purchase back")
		assert.Equal(t, int64(1), count(query.Filter{AuthCode: p4.Resp.AuthCode, TID: "10000005"}))
		assert.Equal(t, int64(len(w.events)), count(query.Filter{CardOrg: "CUP", Env: "production"}))

		// tail: only what came after
		after := all.Rows[2].ID
		assert.Equal(t, int64(2), count(query.Filter{AfterID: after}))
		newest, err := query.Newest(ctx, s.Journal)
		require.NoError(t, err)
		assert.Equal(t, all.Rows[0].ID, newest)
	})

	t.Run("bad filters say what was expected", func(t *testing.T) {
		for _, c := range []struct {
			f   query.Filter
			msg string
		}{
			{query.Filter{Last4: "12a4"}, "expected 4 digits"},
			{query.Filter{Kind: "sale"}, "expected one of purchase, void"},
			{query.Filter{State: "X"}, "expected letters of PADVRT"},
			{query.Filter{Code: "5"}, "expected two characters"},
			{query.Filter{MinAmount: 500, MaxAmount: 100}, "below the minimum 5.00"},
			{query.Filter{From: today, To: earlier}, "before the first"},
			{query.Filter{Limit: -1}, "paging"},
		} {
			_, err := query.List(t.Context(), s.Journal, c.f)
			require.Error(t, err, "%+v", c.f)
			assert.Contains(t, err.Error(), c.msg)
		}
		_, err := query.Summarize(t.Context(), s.Journal, query.Filter{}, query.By("week"), nil)
		assert.ErrorContains(t, err, "expected one of day, settle, merchant")
	})
}

func TestStatesAndColumns(t *testing.T) {
	for _, l := range "PADVRT" {
		assert.NotContains(t, query.StateName(byte(l)), "unknown", fmt.Sprintf("%c", l))
	}
	assert.Contains(t, query.StateName('Z'), "unknown")
	assert.Len(t, query.Columns, len(query.Summary{}.Cells()))
}
