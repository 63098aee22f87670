package settlement

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/terminals"
	"github.com/xuri/excelize/v2"
)

// MerchantSettlement is a merchant's settlement of one date (a settle_merchant row).
type MerchantSettlement struct {
	Date, PayoutDate                             time.Time
	MID, Group, FeeGroup, Cycle                  string
	Rate                                         Rate
	Cap                                          int64
	Purchases, Voids, Reversals, Refunds         int
	PurchaseAmt, VoidAmt, ReversalAmt, RefundAmt int64
	Takings, Fee, Credit                         int64
	RefundsCleared, RefundsPending, Paid, Unpaid int64
	BalanceAfter, FrozenAfter                    int64
}

const settlementCols = `settle_date, payout_date, mid, grp, fee_group, cycle, rate_ppm, cap, purchases, voids, reversals, refunds,
	purchase_amount, void_amount, reversal_amount, refund_amount, takings, fee, credit, refunds_cleared, refunds_pending, paid, unpaid,
	balance_after, frozen_after`

func scanSettlement(r pgx.CollectableRow) (MerchantSettlement, error) {
	var m MerchantSettlement
	var rate int64
	err := r.Scan(&m.Date, &m.PayoutDate, &m.MID, &m.Group, &m.FeeGroup, &m.Cycle, &rate, &m.Cap, &m.Purchases, &m.Voids, &m.Reversals, &m.Refunds,
		&m.PurchaseAmt, &m.VoidAmt, &m.ReversalAmt, &m.RefundAmt, &m.Takings, &m.Fee, &m.Credit, &m.RefundsCleared, &m.RefundsPending, &m.Paid,
		&m.Unpaid, &m.BalanceAfter, &m.FrozenAfter)
	m.Rate = Rate(rate)
	return m, err
}

// Settlements lists merchant settlements of dates [from, to] for one merchant, one group
// (group non-empty) or all.
func (s *Settler) Settlements(ctx context.Context, from, to time.Time, mid, group string) ([]MerchantSettlement, error) {
	rows, err := s.DB.Query(ctx, "SELECT "+settlementCols+` FROM settle_merchant
		WHERE settle_date BETWEEN $1 AND $2 AND ($3 = '' OR mid = $3) AND ($4 = '' OR grp = $4) ORDER BY settle_date, mid`,
		dateOnly(from), dateOnly(to), mid, group)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanSettlement)
}

// Day reports whether settlement date d is closed.
func (s *Settler) Day(ctx context.Context, d time.Time) (*DayResult, bool, error) {
	var state string
	err := s.DB.QueryRow(ctx, "SELECT state FROM settle_day WHERE settle_date = $1", dateOnly(d)).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	r, err := s.dayResult(ctx, dateOnly(d))
	return r, state == "closed", err
}

// LastClosed is the newest closed settlement date ("yesterday's settlement"); ok false when
// none is closed yet.
func (s *Settler) LastClosed(ctx context.Context) (time.Time, bool, error) {
	var d *time.Time
	if err := s.DB.QueryRow(ctx, "SELECT max(settle_date) FROM settle_day WHERE state = 'closed'").Scan(&d); err != nil || d == nil {
		return time.Time{}, false, err
	}
	return *d, true, nil
}

// Line is one transaction line of a statement.
type Line struct {
	Item
	Fee    int64
	Net    int64  // signed: what the line adds to the merchant (refunds negative)
	Status string // refunds: cleared / pending clearing
}

// Statement is a daily statement of one merchant or one group: the settlements it covers, their
// transactions, and totals that equal the settlements.
type Statement struct {
	Date        time.Time
	Title       string // merchant name or group
	MID, Group  string
	Settlements []MerchantSettlement
	Lines       []Line
	Total       MerchantSettlement // sums of Settlements
	Loc         *time.Location     // the cut-off's zone: transaction times are shown in it
}

// DailyStatement builds the statement of merchant mid (or of group, when group is given) for
// closed settlement date d. The transaction lines are read back from the journal under the
// terms stored with the settlement; their sums are checked against the settlement.
func (s *Settler) DailyStatement(ctx context.Context, d time.Time, mid, group string) (*Statement, error) {
	d = dateOnly(d)
	if _, closed, err := s.Day(ctx, d); err != nil {
		return nil, err
	} else if !closed {
		return nil, fmt.Errorf("settlement date %s is not closed: run `shoudan settle run --date %s` first", d.Format("2006-01-02"), d.Format("2006-01-02"))
	}
	sts, err := s.Settlements(ctx, d, d, mid, group)
	if err != nil {
		return nil, err
	}
	if len(sts) == 0 {
		who := "merchant " + mid
		if group != "" {
			who = "group " + group
		}
		return nil, fmt.Errorf("no settlement of %s on %s", who, d.Format("2006-01-02"))
	}
	st := &Statement{Date: d, MID: mid, Group: group, Settlements: sts, Loc: s.Config.Cutoff.Loc}
	st.Title = s.title(mid, group)
	sn, _, err := s.startDay(ctx, d) // the stored terms (the date is closed: nothing is started)
	if err != nil {
		return nil, err
	}
	pendingIDs, err := s.pendingRefundIDs(ctx, d, mid, group)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, m := range sts {
		want[m.MID] = true
	}
	scanMID := mid
	if group != "" {
		scanMID = ""
	}
	var fee, takings, refunds int64
	err = s.Config.scanItems(ctx, s.DB, d, scanMID, true, func(it *Item) {
		if !want[it.MID] {
			return
		}
		l := Line{Item: *it, Fee: it.FeeOf(sn.terms(it.MID))}
		l.Net = it.Base - l.Fee - it.Refund
		if it.Kind == "refund" {
			l.Status = "cleared"
			if pendingIDs[it.ID] {
				l.Status = "pending clearing"
			}
		}
		fee += l.Fee
		takings += it.Base
		refunds += it.Refund
		st.Lines = append(st.Lines, l)
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(st.Lines, func(i, j int) bool { return st.Lines[i].ID < st.Lines[j].ID })
	st.Total = total(sts)
	if fee != st.Total.Fee || takings != st.Total.Takings || refunds != st.Total.RefundAmt {
		return nil, fmt.Errorf("statement of %s: the journal's transactions (takings %d, fee %d, refunds %d) no longer add up to the settlement (takings %d, fee %d, refunds %d)",
			d.Format("2006-01-02"), takings, fee, refunds, st.Total.Takings, st.Total.Fee, st.Total.RefundAmt)
	}
	return st, nil
}

// MonthlyStatement is the statement of merchant mid for a calendar month: one line per closed
// settlement date. Only for merchants with monthly statements enabled, from that month on.
func (s *Settler) MonthlyStatement(ctx context.Context, month time.Time, mid string) (*Statement, error) {
	t, ok := s.Config.Merchants[mid]
	first := time.Date(month.Year(), month.Month(), 1, 0, 0, 0, 0, time.UTC)
	if !ok || t.Monthly.IsZero() {
		return nil, fmt.Errorf("merchant %s has no monthly statements (settlement.merchants.%s.monthly_statements_from)", mid, mid)
	}
	if first.Before(t.Monthly) {
		return nil, fmt.Errorf("merchant %s has monthly statements from %s, not for %s", mid, t.Monthly.Format("2006-01"), first.Format("2006-01"))
	}
	sts, err := s.Settlements(ctx, first, first.AddDate(0, 1, -1), mid, "")
	if err != nil {
		return nil, err
	}
	st := &Statement{Date: first, MID: mid, Title: s.title(mid, ""), Settlements: sts, Total: total(sts)}
	return st, nil
}

func (s *Settler) title(mid, group string) string {
	if group != "" {
		return "集团 " + group
	}
	if s.Registry != nil {
		if m := s.Registry().Merchant(mid); m != nil {
			return m.Name
		}
	}
	return mid
}

func (s *Settler) pendingRefundIDs(ctx context.Context, d time.Time, mid, group string) (map[int64]bool, error) {
	// a refund of date d is pending on the statement if it was still pending after d's close
	rows, err := s.DB.Query(ctx, `SELECT r.txn_id FROM refund_clearing r JOIN settle_merchant m ON m.mid = r.mid AND m.settle_date = r.settle_date
		WHERE r.settle_date = $1 AND ($2 = '' OR r.mid = $2) AND ($3 = '' OR m.grp = $3) AND (r.state = 'pending' OR r.cleared_on > $1 OR r.cleared_by LIKE 'release:%')`,
		d, mid, group)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	out := map[int64]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out, err
}

func total(sts []MerchantSettlement) MerchantSettlement {
	var t MerchantSettlement
	for _, m := range sts {
		t.Purchases += m.Purchases
		t.Voids += m.Voids
		t.Reversals += m.Reversals
		t.Refunds += m.Refunds
		t.PurchaseAmt += m.PurchaseAmt
		t.VoidAmt += m.VoidAmt
		t.ReversalAmt += m.ReversalAmt
		t.RefundAmt += m.RefundAmt
		t.Takings += m.Takings
		t.Fee += m.Fee
		t.Credit += m.Credit
		t.RefundsCleared += m.RefundsCleared
		t.RefundsPending += m.RefundsPending
		t.Paid += m.Paid
	}
	return t
}

// CSVOnlyAbove is the number of transaction lines above which a statement is written as CSV
// alone (a spreadsheet of that size is unusable).
const CSVOnlyAbove = 20000

// Write writes the statement into dir as <name>.xlsx and <name>.csv (CSV alone above
// CSVOnlyAbove lines) and returns the paths written.
func (st *Statement) Write(dir, name string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	p := filepath.Join(dir, name+".csv")
	if err := st.writeCSV(p); err != nil {
		return nil, err
	}
	paths = append(paths, p)
	if len(st.Lines) <= CSVOnlyAbove {
		p := filepath.Join(dir, name+".xlsx")
		if err := st.writeXLSX(p); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

var summaryHeader = []string{"结算日期 settle date", "商户号 MID", "集团号 group", "费率 rate", "封顶 cap", "周期 cycle", "划款日 payout date",
	"消费笔数 purchases", "消费金额 purchase amount", "撤销笔数 voids", "撤销金额 void amount", "冲正笔数 reversals", "冲正金额 reversal amount",
	"交易净额 takings", "手续费 fee", "结算金额 credit", "退货笔数 refunds", "退货金额 refund amount", "退货已清算 refunds cleared",
	"退货待清算 refunds pending", "划款 paid", "余额 balance", "冻结 frozen"}

func summaryRow(m MerchantSettlement, total bool) []string {
	a := terminals.FormatAmount
	sign := func(v int64) string {
		if v < 0 {
			return "-" + a(-v)
		}
		return a(v)
	}
	date, payout, bal, frozen, rate, capS := m.Date.Format("2006-01-02"), m.PayoutDate.Format("2006-01-02"), sign(m.BalanceAfter), sign(m.FrozenAfter), m.Rate.String(), a(m.Cap)
	mid := m.MID
	if total {
		date, payout, bal, frozen, rate, capS, mid = "合计 total", "", "", "", "", "", ""
	}
	return []string{date, mid, m.Group, rate, capS, m.Cycle, payout, strconv.Itoa(m.Purchases), sign(m.PurchaseAmt), strconv.Itoa(m.Voids), sign(m.VoidAmt),
		strconv.Itoa(m.Reversals), sign(m.ReversalAmt), sign(m.Takings), sign(m.Fee), sign(m.Credit), strconv.Itoa(m.Refunds), sign(m.RefundAmt),
		sign(m.RefundsCleared), sign(m.RefundsPending), sign(m.Paid), bal, frozen}
}

var lineHeader = []string{"时间 time", "商户号 MID", "终端号 TID", "批次 batch", "流水 STAN", "参考号 RRN", "类型 kind", "卡号 card", "金额 amount", "计费金额 fee base", "手续费 fee", "净额 net", "状态 status"}

func lineRow(l Line, loc *time.Location) []string {
	sign := func(v int64) string {
		if v < 0 {
			return "-" + terminals.FormatAmount(-v)
		}
		return terminals.FormatAmount(v)
	}
	if loc == nil {
		loc = time.Local
	}
	return []string{l.At.In(loc).Format("2006-01-02 15:04:05"), l.MID, l.TID, l.Batch, l.STAN, l.RRN, l.Kind, l.PAN, terminals.FormatAmount(l.Amount),
		sign(l.Base), sign(l.Fee), sign(l.Net), l.Status}
}

func (st *Statement) writeCSV(path string) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"# " + st.Title, st.Date.Format("2006-01-02")})
	_ = w.Write(summaryHeader)
	for _, m := range st.Settlements {
		_ = w.Write(summaryRow(m, false))
	}
	_ = w.Write(summaryRow(st.Total, true))
	if len(st.Lines) > 0 {
		_ = w.Write(nil)
		_ = w.Write(lineHeader)
		for _, l := range st.Lines {
			_ = w.Write(lineRow(l, st.Loc))
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

func (st *Statement) writeXLSX(path string) error {
	x := excelize.NewFile()
	defer x.Close()
	const sum, det = "汇总 Summary", "明细 Transactions"
	x.SetSheetName("Sheet1", sum)
	put := func(sheet string, row int, vals []string) {
		cell, _ := excelize.CoordinatesToCellName(1, row)
		vs := make([]any, len(vals))
		for i, v := range vals {
			vs[i] = v
		}
		_ = x.SetSheetRow(sheet, cell, &vs)
	}
	put(sum, 1, []string{st.Title, st.Date.Format("2006-01-02")})
	put(sum, 2, summaryHeader)
	r := 3
	for _, m := range st.Settlements {
		put(sum, r, summaryRow(m, false))
		r++
	}
	put(sum, r, summaryRow(st.Total, true))
	if len(st.Lines) > 0 {
		if _, err := x.NewSheet(det); err != nil {
			return err
		}
		put(det, 1, lineHeader)
		for i, l := range st.Lines {
			put(det, i+2, lineRow(l, st.Loc))
		}
	}
	return x.SaveAs(path)
}

// StatementName is the file name (without extension) of a daily statement.
func StatementName(d time.Time, mid, group string) string {
	if group != "" {
		return fmt.Sprintf("group-%s-%s", group, d.Format("20060102"))
	}
	return fmt.Sprintf("%s-%s", mid, d.Format("20060102"))
}

// MonthlyName is the file name of a monthly statement.
func MonthlyName(month time.Time, mid string) string {
	return fmt.Sprintf("%s-%s-monthly", mid, month.Format("200601"))
}

// WriteDay writes every statement of closed date d into dir: each merchant's, each group's,
// and, on the last day of a month, the monthly statements of merchants that have them.
func (s *Settler) WriteDay(ctx context.Context, d time.Time, dir string) ([]string, error) {
	sts, err := s.Settlements(ctx, d, d, "", "")
	if err != nil {
		return nil, err
	}
	var out []string
	groups := map[string]bool{}
	for _, m := range sts {
		st, err := s.DailyStatement(ctx, d, m.MID, "")
		if err != nil {
			return out, err
		}
		ps, err := st.Write(dir, StatementName(d, m.MID, ""))
		if err != nil {
			return out, err
		}
		out = append(out, ps...)
		if m.Group != "" {
			groups[m.Group] = true
		}
	}
	for g := range groups {
		st, err := s.DailyStatement(ctx, d, "", g)
		if err != nil {
			return out, err
		}
		ps, err := st.Write(dir, StatementName(d, "", g))
		if err != nil {
			return out, err
		}
		out = append(out, ps...)
	}
	if d.AddDate(0, 0, 1).Day() == 1 {
		for mid, t := range s.Config.Merchants {
			if t.Monthly.IsZero() || d.Before(t.Monthly) {
				continue
			}
			st, err := s.MonthlyStatement(ctx, d, mid)
			if err != nil {
				return out, err
			}
			ps, err := st.Write(dir, MonthlyName(d, mid))
			if err != nil {
				return out, err
			}
			out = append(out, ps...)
		}
	}
	return out, nil
}
