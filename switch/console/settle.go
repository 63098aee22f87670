package console

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/settlement"
)

// Settlement pages: a date's merchant settlements (yesterday's by default), one settlement with
// its transactions, the merchant's balance, frozen funds and refunds pending clearing, and the
// statement as .xlsx or CSV. All of it comes from package settlement; merchants see their own.

type settleListData struct {
	Date     string
	Dates    []string
	Rows     []settlement.MerchantSettlement
	Names    map[string]string
	Total    settlement.MerchantSettlement
	Closed   bool
	Disabled bool
}

func (c *Console) settleList(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title = p.T("settlement")
	d := &settleListData{Names: map[string]string{}}
	p.Data = d
	if c.Settler == nil {
		d.Disabled = true
		c.render(w, p, "settlement.html", http.StatusOK)
		return
	}
	mid, ok := visibleMID(p.User, r.URL.Query().Get("mid"))
	if !ok {
		c.notFound(w, p)
		return
	}
	if !mayQuerySettlement(p) {
		c.forbidden(w, p)
		return
	}
	day, _, err := c.Settler.LastClosed(r.Context())
	if err != nil {
		p.Error = err.Error()
	}
	if s := r.URL.Query().Get("date"); s != "" {
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			c.fail(w, p, http.StatusBadRequest, "date: expected YYYY-MM-DD, found "+s)
			return
		}
		day = t
	}
	if day.IsZero() {
		c.render(w, p, "settlement.html", http.StatusOK)
		return
	}
	d.Date = day.Format("2006-01-02")
	_, d.Closed, _ = c.Settler.Day(r.Context(), day)
	rows, err := c.Settler.Settlements(r.Context(), day, day, mid, "")
	if err != nil {
		p.Error = err.Error()
	}
	d.Rows = rows
	for _, m := range rows {
		d.Names[m.MID] = p.merchantName(m.MID)
	}
	d.Total = settleTotal(rows)
	for i := 0; i < 7; i++ {
		d.Dates = append(d.Dates, day.AddDate(0, 0, -i).Format("2006-01-02"))
	}
	c.render(w, p, "settlement.html", http.StatusOK)
}

// mayQuerySettlement: a user limited to some terminals (a cashier) does not see the merchant's
// settlement, balance and statements; the merchant's admin and reviewer and the acquirer do.
func mayQuerySettlement(p *page) bool {
	s := p.User.Scope()
	return s.All || len(s.TIDs) == 0
}

func settleTotal(rows []settlement.MerchantSettlement) settlement.MerchantSettlement {
	var t settlement.MerchantSettlement
	for _, m := range rows {
		t.Purchases += m.Purchases
		t.PurchaseAmt += m.PurchaseAmt
		t.Voids += m.Voids
		t.VoidAmt += m.VoidAmt
		t.Takings += m.Takings
		t.Fee += m.Fee
		t.Credit += m.Credit
		t.RefundsCleared += m.RefundsCleared
		t.RefundsPending += m.RefundsPending
		t.Paid += m.Paid
	}
	return t
}

type settleDetailData struct {
	Date, MID, Name string
	Statement       *settlement.Statement
	Balance         *settlement.Balance
}

// settleTarget reads {date} and {mid} and checks the user may see that merchant.
func (c *Console) settleTarget(w http.ResponseWriter, r *http.Request, p *page) (time.Time, string, bool) {
	if c.Settler == nil {
		c.notFound(w, p)
		return time.Time{}, "", false
	}
	if !mayQuerySettlement(p) {
		c.forbidden(w, p)
		return time.Time{}, "", false
	}
	mid, ok := visibleMID(p.User, r.PathValue("mid"))
	day, err := time.Parse("2006-01-02", r.PathValue("date"))
	if !ok || err != nil || mid != r.PathValue("mid") {
		c.notFound(w, p)
		return time.Time{}, "", false
	}
	return day, mid, true
}

func (c *Console) settleDetail(w http.ResponseWriter, r *http.Request, p *page) {
	day, mid, ok := c.settleTarget(w, r, p)
	if !ok {
		return
	}
	p.Title = p.T("settlement")
	st, err := c.Settler.DailyStatement(r.Context(), day, mid, "")
	if err != nil {
		c.fail(w, p, http.StatusNotFound, err.Error())
		return
	}
	b, err := c.Settler.BalanceOf(r.Context(), mid)
	if err != nil {
		p.Error = err.Error()
	}
	p.Data = &settleDetailData{Date: day.Format("2006-01-02"), MID: mid, Name: p.merchantName(mid), Statement: st, Balance: b}
	c.render(w, p, "settlement_detail.html", http.StatusOK)
}

// settleStatement downloads a daily statement (.xlsx, or .csv; above 20,000 lines CSV only).
func (c *Console) settleStatement(w http.ResponseWriter, r *http.Request, p *page) {
	day, mid, ok := c.settleTarget(w, r, p)
	if !ok {
		return
	}
	ext := strings.TrimPrefix(r.PathValue("file"), "statement.")
	st, err := c.Settler.DailyStatement(r.Context(), day, mid, "")
	if err != nil || (ext != "xlsx" && ext != "csv") {
		c.notFound(w, p)
		return
	}
	dir, err := os.MkdirTemp("", "statement-")
	if err != nil {
		c.fail(w, p, http.StatusInternalServerError, err.Error())
		return
	}
	defer os.RemoveAll(dir)
	name := settlement.StatementName(day, mid, "")
	if _, err := st.Write(dir, name); err != nil {
		c.fail(w, p, http.StatusInternalServerError, err.Error())
		return
	}
	path := filepath.Join(dir, name+"."+ext)
	if _, err := os.Stat(path); err != nil {
		c.fail(w, p, http.StatusNotFound, p.T("csv_only"))
		return
	}
	c.audit(r, p.User, backoffice.ActExport, "statement "+name+"."+ext, true)
	ct := "text/csv; charset=utf-8"
	if ext == "xlsx" {
		ct = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+"."+ext+`"`)
	http.ServeFile(w, r, path)
}
