package settlement_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/settlement"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals"
	"github.com/xuri/excelize/v2"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

// The week: Monday 2026-09-28 to Monday 2026-10-05. 10-01 and 10-02 are configured holidays,
// Sunday 10-04 a make-up working day (调休).
const weekConfig = `
settlement:
  cutoff: "23:00"
  timezone: Asia/Shanghai
  cycle: T+1
  fees:
    default: {rate: "0.60%"}
    groups:
      - {name: dining, mccs: ["5812-5814"], rate: "1.25%"}
      - {name: retail, mccs: ["5411", "5300-5399"], rate: "0.38%", cap: "20.00"}
  calendar:
    holidays: [2026-10-01, 2026-10-02]
    workdays: [2026-10-04]
  merchants:
    "898310059990003": {cycle: D+0, monthly_statements_from: 2026-10}
    "898310057320004": {rate: "38bp", cycle: T+2}
`

const (
	m1 = "898310058120001" // dining, group G1, frozen for a while
	m2 = "898310054110002" // retail, capped, group G1
	m3 = "898310059990003" // default rate, D+0, monthly statements
	m4 = "898310057320004" // own rate, T+2
	m5 = "898310058130005" // dining, refund larger than its balance
)

var mids = []string{m1, m2, m3, m4, m5}

func registry() *terminals.Registry {
	return terminals.NewRegistry(terminals.DefaultRules(), []terminals.Merchant{
		{MID: m1, MCC: "5812", Name: "一号餐厅", Group: "G1"}, {MID: m2, MCC: "5411", Name: "二号超市", Group: "G1"},
		{MID: m3, MCC: "5999", Name: "三号商店"}, {MID: m4, MCC: "5732", Name: "四号电器"}, {MID: m5, MCC: "5813", Name: "五号酒吧"},
	}, nil)
}

func weekConf(t testing.TB) *settlement.Config {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(weekConfig), &n); err != nil {
		t.Fatal(err)
	}
	c, err := settlement.ParseConfig(&n)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func date(s string) time.Time { d, _ := time.Parse("2006-01-02", s); return d }

var week = []string{"2026-09-28", "2026-09-29", "2026-09-30", "2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05"}

// Pay-out dates worked out by hand from the calendar above (not by the code under test).
var wantPayout = map[string]map[string]string{
	"T+1": {"2026-09-28": "2026-09-29", "2026-09-29": "2026-09-30", "2026-09-30": "2026-10-04", "2026-10-01": "2026-10-04",
		"2026-10-02": "2026-10-04", "2026-10-03": "2026-10-04", "2026-10-04": "2026-10-05", "2026-10-05": "2026-10-06"},
	"T+2": {"2026-09-28": "2026-09-30", "2026-09-29": "2026-10-04", "2026-09-30": "2026-10-05", "2026-10-01": "2026-10-05",
		"2026-10-02": "2026-10-05", "2026-10-03": "2026-10-05", "2026-10-04": "2026-10-06", "2026-10-05": "2026-10-07"},
	"D+0": {"2026-09-28": "2026-09-28", "2026-09-29": "2026-09-29", "2026-09-30": "2026-09-30", "2026-10-01": "2026-10-01",
		"2026-10-02": "2026-10-02", "2026-10-03": "2026-10-03", "2026-10-04": "2026-10-04", "2026-10-05": "2026-10-05"},
}

// nextBusiness: the first business day after each date (by hand), the value floor of a T+N
// pay-out made late at that date's close.
var nextBusiness = map[string]string{"2026-09-28": "2026-09-29", "2026-09-29": "2026-09-30", "2026-09-30": "2026-10-04", "2026-10-01": "2026-10-04",
	"2026-10-02": "2026-10-04", "2026-10-03": "2026-10-04", "2026-10-04": "2026-10-05", "2026-10-05": "2026-10-06"}

var cycleOf = map[string]string{m1: "T+1", m2: "T+1", m3: "D+0", m4: "T+2", m5: "T+1"}

// ppm and cap per merchant, from the config above read by eye.
var rateOf = map[string][2]int64{m1: {12500, 0}, m2: {3800, 2000}, m3: {6000, 0}, m4: {3800, 0}, m5: {12500, 0}}

func fee(mid string, amount int64) int64 {
	r := rateOf[mid]
	f := (amount*r[0] + 500000) / 1000000 // half up
	if r[1] > 0 && f > r[1] {
		f = r[1]
	}
	return f
}

// row is a generated journal row.
type row struct {
	id       int64
	at       time.Time
	mid      string
	kind     string
	mti      string
	amount   int64
	resp     string
	state    byte
	orig     int64
	refunded int64
}

// want is the test's own figures of one merchant's settlement date.
type want struct {
	purchases, voids, reversals, refunds      int
	purchaseAmt, voidAmt, reversalAmt, refAmt int64
	fee                                       int64
	refundList                                []*row
}

func (w *want) takings() int64 { return w.purchaseAmt - w.voidAmt + w.reversalAmt }

// generator makes a week of traffic and keeps its own account of what each day settles to.
type generator struct {
	cut       settlement.Cutoff
	rows      []*row
	byID      map[int64]*row
	want      map[string]map[string]*want // date -> mid -> figures
	rnd       *rand.Rand
	bigRefund *row
}

func newGenerator(c *settlement.Config) *generator {
	return &generator{cut: c.Cutoff, byID: map[int64]*row{}, want: map[string]map[string]*want{}, rnd: rand.New(rand.NewPCG(14, 8583))}
}

func (g *generator) w(at time.Time, mid string) *want {
	d := g.cut.Date(at).Format("2006-01-02")
	if g.want[d] == nil {
		g.want[d] = map[string]*want{}
	}
	if g.want[d][mid] == nil {
		g.want[d][mid] = &want{}
	}
	return g.want[d][mid]
}

func (g *generator) add(r *row) *row {
	r.id = int64(len(g.rows) + 1)
	g.rows = append(g.rows, r)
	g.byID[r.id] = r
	return r
}

func (g *generator) purchase(at time.Time, mid string, amount int64) *row {
	r := g.add(&row{at: at, mid: mid, kind: "purchase", mti: "0200", amount: amount, resp: "00", state: 'A'})
	w := g.w(at, mid)
	w.purchases++
	w.purchaseAmt += amount
	w.fee += fee(mid, amount)
	return r
}

func (g *generator) void(at time.Time, p *row) {
	g.add(&row{at: at, mid: p.mid, kind: "void", mti: "0200", amount: p.amount, resp: "00", state: 'A', orig: p.id})
	p.state = 'V'
	w := g.w(at, p.mid)
	w.voids++
	w.voidAmt += p.amount
	w.fee -= fee(p.mid, p.amount)
}

func (g *generator) reversal(at time.Time, p *row, effective bool) {
	g.add(&row{at: at, mid: p.mid, kind: "reversal", mti: "0400", amount: p.amount, resp: "00", state: 'A', orig: p.id})
	if p.state == 'A' || p.state == 'T' {
		p.state = 'R'
	}
	if effective {
		w := g.w(at, p.mid)
		w.reversals++
		w.reversalAmt -= p.amount
		w.fee -= fee(p.mid, p.amount)
	}
}

func (g *generator) refund(at time.Time, p *row, amount int64) *row {
	r := g.add(&row{at: at, mid: p.mid, kind: "refund", mti: "0220", amount: amount, resp: "00", state: 'A', orig: p.id})
	p.refunded += amount
	w := g.w(at, p.mid)
	w.refunds++
	w.refAmt += amount
	w.refundList = append(w.refundList, r)
	return r
}

// generate makes the week: every merchant trades every day; some purchases declined, voided
// (one across the cut-off), reversed (one reversal repeated), timed out; partial refunds of
// earlier days; M5 gets a refund larger than its balance on 09-30 that its 10-01 takings clear.
func (g *generator) generate() {
	loc := g.cut.Loc
	var history []*row
	for di, ds := range week {
		d := date(ds)
		open := time.Date(d.Year(), d.Month(), d.Day()-1, 23, 0, 0, 0, loc) // the previous cut-off
		for _, mid := range mids {
			n := 8 + g.rnd.IntN(10)
			for i := 0; i < n; i++ {
				at := open.Add(time.Duration(g.rnd.Int64N(int64(23*time.Hour + 59*time.Minute))))
				amount := 100 + g.rnd.Int64N(600000)
				if mid == m5 {
					amount = 100 + g.rnd.Int64N(10000) // a small bar: its days do not cover a big refund
				}
				if mid == m2 && i == 0 {
					amount = 987654 // capped fee
				}
				if g.rnd.IntN(12) == 0 {
					g.add(&row{at: at, mid: mid, kind: "purchase", mti: "0200", amount: amount, resp: "51", state: 'D'})
					continue
				}
				p := g.purchase(at, mid, amount)
				switch x := g.rnd.IntN(20); {
				case x == 0:
					g.void(at.Add(time.Minute), p)
				case x == 1:
					g.reversal(at.Add(30*time.Second), p, true)
					if g.rnd.IntN(2) == 0 {
						g.reversal(at.Add(40*time.Second), p, false) // a repeat moves nothing
					}
				default:
					history = append(history, p)
				}
			}
			// a purchase that timed out and was reversed: moves nothing
			tp := g.add(&row{at: open.Add(3 * time.Hour), mid: mid, kind: "purchase", mti: "0200", amount: 5000, resp: "98", state: 'T'})
			g.reversal(open.Add(3*time.Hour+time.Second), tp, false)
			// partial refunds of earlier days' purchases
			if di > 0 && mid != m5 {
				for k := 0; k < 2; k++ {
					p := history[g.rnd.IntN(len(history))]
					if p.mid != mid || p.refunded > 0 || g.cut.Date(p.at).Equal(d) {
						continue
					}
					g.refund(open.Add(5*time.Hour+time.Duration(k)*time.Minute), p, p.amount/3+1)
				}
			}
		}
		// a purchase at 22:59:59 voided at 23:00:01: the void belongs to the next date
		if ds == "2026-09-29" {
			p := g.purchase(time.Date(2026, 9, 29, 22, 59, 59, 0, loc), m3, 45600)
			g.void(time.Date(2026, 9, 29, 23, 0, 1, 0, loc), p)
		}
		switch ds {
		case "2026-09-28":
			history = append(history, g.purchase(open.Add(2*time.Hour), m5, 250000)) // 2,500.00
		case "2026-09-30":
			// M5's only takings today are small; it refunds most of 09-28's 2,500.00
			for _, p := range history {
				if p.mid == m5 && p.amount == 250000 {
					g.bigRefund = g.refund(open.Add(20*time.Hour), p, 240000)
				}
			}
		case "2026-10-01":
			g.purchase(open.Add(10*time.Hour), m5, 300000) // 3,000.00: clears the pending refund
		}
	}
}

func (g *generator) load(t testing.TB, db *pgx.Conn) {
	ctx := context.Background()
	rows := make([][]any, 0, len(g.rows))
	localDay := func(r *row) time.Time {
		lt := r.at.In(time.Local)
		return time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, time.UTC)
	}
	// journal ids carry their day (one partition per day)
	dbID := func(r *row) int64 { return journal.DayBase(localDay(r)) + r.id }
	// the terminal's number and the duplicate key as the journal writes them (migration 0024)
	termNo := func(mid, tid string) int32 {
		var no int32
		if err := db.QueryRow(ctx, "SELECT txn_term_no($1, $2)", mid, tid).Scan(&no); err != nil {
			t.Fatal(err)
		}
		return no
	}
	dkey := func(batch, stan, mti string) any {
		if k, ok := journal.DupKey(batch, stan, mti); ok {
			return k
		}
		return nil
	}
	for _, r := range g.rows {
		var orig any
		if r.orig != 0 {
			orig = dbID(g.byID[r.orig])
		}
		ld := localDay(r)
		if _, err := db.Exec(ctx, "SELECT txn_ensure_partition($1::date)", ld.Format("2006-01-02")); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, []any{dbID(r), r.at, ld, g.cut.Date(r.at), "production", r.mid, "10000001", "000001", fmt.Sprintf("%06d", r.id%1000000),
			r.mti, r.kind, r.amount, "6222021234****0123", fmt.Sprintf("%012d", r.id), r.resp, string(r.state), r.resp == "00" || r.state == 'T',
			[]byte{1}, orig, r.refunded, "U" + fmt.Sprintf("%06d", r.id), termNo(r.mid, "10000001"), dkey("000001", fmt.Sprintf("%06d", r.id%1000000), r.mti)})
	}
	if _, err := db.CopyFrom(ctx, pgx.Identifier{"txn_request"}, []string{"id", "created_at", "local_day", "settle_date", "env", "mid", "tid", "batch", "stan",
		"mti", "kind", "amount", "pan_masked", "rrn", "resp_code", "state", "went_upstream", "req_hash", "orig_id", "refunded", "up_trace", "term", "dkey"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "SELECT setval('txn_id_seq', (SELECT max(id % 1000000000000) FROM txn))"); err != nil {
		t.Fatal(err)
	}
}

// freshDB is a migrated journal database with the generated week in it.
func freshDB(t testing.TB, g *generator) string {
	url := switchtest.Database(t)
	ctx := context.Background()
	key := make([]byte, 32)
	v, err := journal.NewVault(key)
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(ctx, url, v)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	g.load(t, c)
	return url
}

func newPool(t testing.TB, url string) *pgxpool.Pool {
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// model is the test's own balance book: credits oldest first, refunds waiting, holds.
type model struct {
	balance, frozen map[string]int64
	credits         map[string][]*mcredit
	pending         map[string][]*row
	payouts         map[string]int64 // mid|credit date|value date -> amount
}

type mcredit struct {
	date, payout string
	business     bool
	unpaid       int64
}

func newModel() *model {
	return &model{balance: map[string]int64{}, frozen: map[string]int64{}, credits: map[string][]*mcredit{}, pending: map[string][]*row{}, payouts: map[string]int64{}}
}

func (m *model) take(mid string, n int64) {
	for _, c := range m.credits[mid] {
		k := min(c.unpaid, n)
		c.unpaid -= k
		n -= k
	}
}

func (m *model) clear(mid string) (cleared int64) {
	for len(m.pending[mid]) > 0 {
		r := m.pending[mid][0]
		if r.amount > m.balance[mid]-m.frozen[mid] {
			break
		}
		m.balance[mid] -= r.amount
		m.take(mid, r.amount)
		cleared += r.amount
		m.pending[mid] = m.pending[mid][1:]
	}
	return
}

// pay: floorAny is the value floor of D+N credits, floorBiz of T+N ones.
func (m *model) pay(mid, dueBy, floorAny, floorBiz string) (paid int64) {
	for _, c := range m.credits[mid] {
		if c.unpaid <= 0 || c.payout > dueBy {
			continue
		}
		n := min(c.unpaid, m.balance[mid]-m.frozen[mid])
		if n <= 0 {
			break
		}
		c.unpaid -= n
		m.balance[mid] -= n
		paid += n
		v := max(c.payout, floorAny)
		if c.business {
			v = max(c.payout, floorBiz)
		}
		m.payouts[mid+"|"+c.date+"|"+v] += n
	}
	return
}

func (m *model) close(g *generator, d string) map[string][2]int64 {
	out := map[string][2]int64{}
	next := date(d).AddDate(0, 0, 1).Format("2006-01-02")
	for _, mid := range mids {
		w := g.want[d][mid]
		if w == nil {
			w = &want{}
		}
		credit := w.takings() - w.fee
		m.balance[mid] += credit
		m.credits[mid] = append(m.credits[mid], &mcredit{date: d, payout: wantPayout[cycleOf[mid]][d], business: cycleOf[mid][0] == 'T', unpaid: credit})
		rs := append([]*row(nil), w.refundList...)
		sort.Slice(rs, func(i, j int) bool {
			return rs[i].at.Before(rs[j].at) || rs[i].at.Equal(rs[j].at) && rs[i].id < rs[j].id
		})
		m.pending[mid] = append(m.pending[mid], rs...)
		cleared := m.clear(mid)
		paid := m.pay(mid, next, d, nextBusiness[d])
		out[mid] = [2]int64{cleared, paid}
	}
	return out
}

func payoutsOf(t testing.TB, s *settlement.Settler) map[string]int64 {
	ps, err := s.Payouts(context.Background(), "", date("2026-01-01"), date("2026-12-31"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, p := range ps {
		got[p.MID+"|"+p.CreditDate.Format("2006-01-02")+"|"+p.ValueDate.Format("2006-01-02")] += p.Amount
	}
	return got
}

func TestSettlementWeek(t *testing.T) {
	ctx := context.Background()
	conf := weekConf(t)
	g := newGenerator(conf)
	g.generate()
	url := freshDB(t, g)
	pool := newPool(t, url)
	var clock time.Time
	s := &settlement.Settler{DB: pool, Config: conf, Registry: registry, Now: func() time.Time { return clock }}
	m := newModel()
	loc := conf.Cutoff.Loc

	// before its cut-off a date does not close
	clock = time.Date(2026, 9, 28, 22, 59, 0, 0, loc)
	if _, err := s.Close(ctx, date("2026-09-28")); err == nil {
		t.Fatal("2026-09-28 closed before its cut-off")
	}
	var hold *settlement.Hold
	for _, ds := range week {
		clock = conf.Cutoff.At(date(ds)).Add(5 * time.Minute)
		rs, err := s.Close(ctx, date(ds))
		if err != nil {
			t.Fatalf("close %s: %v", ds, err)
		}
		if len(rs) != 1 || rs[0].Already {
			t.Fatalf("close %s: %+v", ds, rs)
		}
		mv := m.close(g, ds)
		sts, err := s.Settlements(ctx, date(ds), date(ds), "", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(sts) != len(mids) {
			t.Fatalf("%s: %d merchant settlements, want %d", ds, len(sts), len(mids))
		}
		for _, st := range sts {
			w := g.want[ds][st.MID]
			got := [...]int64{int64(st.Purchases), st.PurchaseAmt, int64(st.Voids), st.VoidAmt, int64(st.Reversals), st.ReversalAmt, int64(st.Refunds), st.RefundAmt, st.Fee, st.Takings, st.Credit, st.RefundsCleared, st.Paid}
			exp := [...]int64{int64(w.purchases), w.purchaseAmt, int64(w.voids), w.voidAmt, int64(w.reversals), w.reversalAmt, int64(w.refunds), w.refAmt, w.fee, w.takings(), w.takings() - w.fee, mv[st.MID][0], mv[st.MID][1]}
			if got != exp {
				t.Errorf("%s %s: settled (purchases, amt, voids, amt, reversals, amt, refunds, amt, fee, takings, credit, cleared, paid)\n got %v\nwant %v", ds, st.MID, got, exp)
			}
			if p := st.PayoutDate.Format("2006-01-02"); p != wantPayout[cycleOf[st.MID]][ds] || st.Cycle != cycleOf[st.MID] {
				t.Errorf("%s %s: pay-out %s %s, want %s %s", ds, st.MID, st.Cycle, p, cycleOf[st.MID], wantPayout[cycleOf[st.MID]][ds])
			}
			if st.BalanceAfter != m.balance[st.MID] || st.FrozenAfter != m.frozen[st.MID] {
				t.Errorf("%s %s: balance %d frozen %d after the close, want %d %d", ds, st.MID, st.BalanceAfter, st.FrozenAfter, m.balance[st.MID], m.frozen[st.MID])
			}
			checkStatement(t, s, date(ds), st)
		}
		switch ds {
		case "2026-09-28":
			// risk hold on M1 the next morning: its 09-29 credit is not paid out
			clock = time.Date(2026, 9, 29, 9, 0, 0, 0, loc)
			if hold, err = s.Freeze(ctx, m1, 200_000_00, "risk case 14: unusual refunds", "ops.wang"); err != nil {
				t.Fatal(err)
			}
			m.frozen[m1] += 200_000_00
		case "2026-09-30":
			b, _ := s.BalanceOf(ctx, m5)
			if len(b.PendingRefunds) != 1 || b.PendingRefunds[0].Amount != 240000 || b.PendingRefunds[0].RRN != fmt.Sprintf("%012d", g.bigRefund.id) {
				t.Fatalf("M5 after 09-30: want its 2,400.00 refund pending clearing, got %+v (balance %d)", b.PendingRefunds, b.Balance)
			}
		case "2026-10-01":
			b, _ := s.BalanceOf(ctx, m5)
			if len(b.PendingRefunds) != 0 {
				t.Fatalf("M5 after 10-01: the refund should have cleared from the day's takings, still pending: %+v", b.PendingRefunds)
			}
			// release on the holiday morning: what was due is paid, value the next business day
			clock = time.Date(2026, 10, 2, 10, 0, 0, 0, loc)
			if _, err := s.Release(ctx, hold.ID, "case closed", "ops.li"); err != nil {
				t.Fatal(err)
			}
			m.frozen[m1] -= 200_000_00
			m.clear(m1)
			m.pay(m1, "2026-10-02", "2026-10-02", "2026-10-04")
			if _, err := s.Release(ctx, hold.ID, "again", "ops.li"); err == nil {
				t.Fatal("a hold was released twice")
			}
		}
	}
	got := payoutsOf(t, s)
	if fmt.Sprint(got) != fmt.Sprint(m.payouts) {
		t.Errorf("pay-outs (mid|settlement|value date):\n got %v\nwant %v", got, m.payouts)
	}
	// the freeze held M1's 09-29 credit back until the release; 09-28's was paid before it
	if _, paid := got[m1+"|2026-09-29|2026-09-30"]; paid {
		t.Errorf("M1's 09-29 credit was paid on its date although frozen")
	}
	if m.payouts[m1+"|2026-09-29|2026-10-04"] == 0 {
		t.Errorf("M1's 09-29 credit should have been paid after the release, value 2026-10-04: %v", m.payouts)
	}
	// closing again reports, changes nothing
	before := dump(t, pool)
	rs, err := s.Close(ctx, date("2026-10-05"))
	if err != nil || len(rs) != 1 || !rs[0].Already {
		t.Fatalf("re-close: %+v %v", rs, err)
	}
	if after := dump(t, pool); after != before {
		t.Fatal("closing a closed date changed the settlement tables")
	}
	// group statement = the sum of its merchants
	gst, err := s.DailyStatement(ctx, date("2026-10-01"), "", "G1")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Settlements(ctx, date("2026-10-01"), date("2026-10-01"), m1, "")
	b, _ := s.Settlements(ctx, date("2026-10-01"), date("2026-10-01"), m2, "")
	if len(gst.Settlements) != 2 || gst.Total.Credit != a[0].Credit+b[0].Credit || gst.Total.Fee != a[0].Fee+b[0].Fee {
		t.Errorf("group G1 statement: %+v", gst.Total)
	}
	// monthly statements: only from the month enabled
	if _, err := s.MonthlyStatement(ctx, date("2026-09-01"), m3); err == nil {
		t.Error("M3 got a monthly statement for September; enabled from October")
	}
	if _, err := s.MonthlyStatement(ctx, date("2026-10-01"), m1); err == nil {
		t.Error("M1 got a monthly statement; never enabled")
	}
	mst, err := s.MonthlyStatement(ctx, date("2026-10-01"), m3)
	if err != nil {
		t.Fatal(err)
	}
	var credit int64
	for _, ds := range week[3:] {
		credit += g.want[ds][m3].takings() - g.want[ds][m3].fee
	}
	if len(mst.Settlements) != 5 || mst.Total.Credit != credit {
		t.Errorf("M3 October statement: %d days, credit %d, want 5 days, %d", len(mst.Settlements), mst.Total.Credit, credit)
	}
	// the files: xlsx and CSV, the xlsx total row equal to the settlement
	dir := t.TempDir()
	paths, err := s.WriteDay(ctx, date("2026-10-01"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2*(len(mids)+1) {
		t.Errorf("WriteDay wrote %d files, want xlsx and CSV for %d merchants and 1 group: %v", len(paths), len(mids), paths)
	}
	x, err := excelize.OpenFile(dir + "/" + settlement.StatementName(date("2026-10-01"), m2, "") + ".xlsx")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	rowsX, _ := x.GetRows("汇总 Summary")
	last := rowsX[len(rowsX)-1]
	if last[0] != "合计 total" || last[15] != terminals.FormatAmount(b[0].Credit) || last[14] != terminals.FormatAmount(b[0].Fee) {
		t.Errorf("xlsx total row %v, want credit %d fee %d", last, b[0].Credit, b[0].Fee)
	}
	if _, err := os.Stat(dir + "/" + settlement.StatementName(date("2026-10-01"), "", "G1") + ".csv"); err != nil {
		t.Error(err)
	}
}

// checkStatement: the daily statement's lines add up to the settlement, line by line from the
// journal, and its totals equal it.
func checkStatement(t *testing.T, s *settlement.Settler, d time.Time, st settlement.MerchantSettlement) {
	t.Helper()
	sm, err := s.DailyStatement(context.Background(), d, st.MID, "")
	if err != nil {
		t.Fatalf("statement %s %s: %v", d.Format("2006-01-02"), st.MID, err)
	}
	var fee, net, refunds int64
	for _, l := range sm.Lines {
		fee += l.Fee
		net += l.Net
		refunds += l.Refund
	}
	if sm.Total.Fee != st.Fee || fee != st.Fee || net != st.Credit-st.RefundAmt || refunds != st.RefundAmt || sm.Total.Credit != st.Credit {
		t.Errorf("statement %s %s: lines fee %d net %d refunds %d, totals %+v; settlement fee %d credit %d refunds %d", d.Format("2006-01-02"), st.MID,
			fee, net, refunds, sm.Total, st.Fee, st.Credit, st.RefundAmt)
	}
}

// dump is every settlement table's content without ids and timestamps, in a stable order.
func dump(t testing.TB, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) string {
	out := ""
	for _, q := range []string{
		"SELECT settle_date, state, txns, merchants, takings, fees, refunds, paid FROM settle_day ORDER BY 1",
		`SELECT settle_date, mid, grp, fee_group, rate_ppm, cap, cycle, payout_date, purchases, purchase_amount, voids, void_amount, reversals,
			reversal_amount, refunds, refund_amount, takings, fee, credit, refunds_cleared, refunds_pending, paid, unpaid, balance_after, frozen_after
			FROM settle_merchant ORDER BY 1, 2`,
		"SELECT mid, balance, frozen FROM merchant_account ORDER BY 1",
		"SELECT txn_id, mid, settle_date, amount, state, cleared_on, cleared_by FROM refund_clearing ORDER BY 1",
		"SELECT mid, credit_date, value_date, amount, made_by FROM payout ORDER BY 1, 2, 5",
		"SELECT mid, kind, amount, ref, balance_after, frozen_after FROM balance_entry ORDER BY mid, id",
	} {
		rows, err := db.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			v, _ := rows.Values()
			out += fmt.Sprintln(v...)
		}
		rows.Close()
	}
	return out
}
