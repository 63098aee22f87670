package console

import (
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoudan/shoudan/spec"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/query"
	"github.com/shoudan/shoudan/terminals"
)

// PageSize is the transaction list's page size.
const PageSize = 50

// form is the transaction query as the URL carries it (bookmarkable: every filter is a
// parameter) and as the form shows it back.
type form struct {
	From, To, SettleFrom, SettleTo string
	MID, TID, Operator, Card       string
	PANHash                        string // hex keyed hash of a full card number (never the number)
	Min, Max                       string
	Code, Kind, State, RRN, Auth   string
	Page                           int
	Advanced                       bool
}

func (f form) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"from": f.From, "to": f.To, "sfrom": f.SettleFrom, "sto": f.SettleTo, "mid": f.MID, "tid": f.TID,
		"op": f.Operator, "card": f.Card, "panh": f.PANHash, "min": f.Min, "max": f.Max, "code": f.Code, "kind": f.Kind, "state": f.State, "rrn": f.RRN, "auth": f.Auth} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// Query is the form's query string without the page (for tabs, exports and paging links).
func (f form) Query() template.URL { return template.URL(f.values().Encode()) }

// PageQuery is the query string of page n.
func (f form) PageQuery(n int) template.URL {
	v := f.values()
	if n > 1 {
		v.Set("page", strconv.Itoa(n))
	}
	return template.URL(v.Encode())
}

func (c *Console) today() time.Time {
	y, m, d := c.Now().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.Local)
}

func readForm(r *http.Request, today time.Time) form {
	q := r.URL.Query()
	g := func(k string) string { return strings.TrimSpace(q.Get(k)) }
	f := form{From: g("from"), To: g("to"), SettleFrom: g("sfrom"), SettleTo: g("sto"), MID: g("mid"), TID: g("tid"), Operator: g("op"),
		Card: g("card"), Min: g("min"), Max: g("max"), Code: strings.ToUpper(g("code")), Kind: g("kind"), State: strings.ToUpper(g("state")),
		RRN: g("rrn"), Auth: g("auth"), PANHash: g("panh")}
	switch g("day") {
	case "today":
		f.From = today.Format("2006-01-02")
		f.To = f.From
	case "yesterday":
		f.From = today.AddDate(0, 0, -1).Format("2006-01-02")
		f.To = f.From
	}
	f.Page, _ = strconv.Atoi(g("page"))
	if f.Page < 1 {
		f.Page = 1
	}
	f.Advanced = f.SettleFrom != "" || f.SettleTo != "" || f.Min != "" || f.Max != "" || f.Code != "" || f.Kind != "" || f.State != "" || f.RRN != "" || f.Auth != "" || f.Operator != ""
	return f
}

// filter turns the form into a query filter narrowed to what u may read. A filter that reaches
// outside u's scope (another merchant, a terminal not assigned) is an error: the caller answers
// 404 without saying whether the other data exists.
func (f form) filter(u *backoffice.User) (query.Filter, error) {
	var qf query.Filter
	var err error
	day := func(s, name string) time.Time {
		if s == "" || err != nil {
			return time.Time{}
		}
		t, e := time.ParseInLocation("2006-01-02", s, time.Local)
		if e != nil {
			err = fmt.Errorf("%s: expected a date YYYY-MM-DD, found %q", name, s)
		}
		return t
	}
	qf.From, qf.To = day(f.From, "from"), day(f.To, "to")
	qf.SettleFrom, qf.SettleTo = day(f.SettleFrom, "settlement from"), day(f.SettleTo, "settlement to")
	amount := func(s, name string) int64 {
		if s == "" || err != nil {
			return 0
		}
		v, e := terminals.ParseAmount(s)
		if e != nil {
			err = fmt.Errorf("%s: %v", name, e)
		}
		return v
	}
	qf.MinAmount, qf.MaxAmount = amount(f.Min, "minimum amount"), amount(f.Max, "maximum amount")
	if err != nil {
		return qf, err
	}
	switch card := strings.ReplaceAll(f.Card, " ", ""); {
	case card == "":
	case len(card) == 4:
		qf.Last4 = card
	case f.PANHash != "" && strings.Contains(card, "*"): // the masked number shown for a hash search
	default:
		return qf, fmt.Errorf("card: expected the last 4 digits or the whole card number (13 to 19 digits), found %d characters", len(card))
	}
	if f.PANHash != "" {
		h, e := hex.DecodeString(f.PANHash)
		if e != nil || len(h) < 16 {
			return qf, fmt.Errorf("card: the card number's hash in the link is damaged (%d characters)", len(f.PANHash))
		}
		qf.PANHash = h
	}
	qf.MID, qf.TID, qf.Operator = f.MID, f.TID, f.Operator
	qf.Code, qf.Kind, qf.State, qf.RRN, qf.AuthCode = f.Code, f.Kind, f.State, f.RRN, f.Auth
	return scope(qf, u)
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// scope narrows a filter to the user's scope.
func scope(qf query.Filter, u *backoffice.User) (query.Filter, error) {
	s := u.Scope()
	if s.All {
		return qf, nil
	}
	if qf.MID != "" && qf.MID != s.MID {
		return qf, errNotFound
	}
	qf.MID = s.MID
	if len(s.TIDs) > 0 {
		if qf.TID != "" && !slices.Contains(s.TIDs, qf.TID) {
			return qf, errNotFound
		}
		qf.TIDs = s.TIDs
	}
	if s.Operator != "" {
		if qf.Operator != "" && qf.Operator != s.Operator {
			return qf, errNotFound
		}
		qf.Operator = s.Operator
	}
	return qf, nil
}

type txnListData struct {
	Form    form
	By      query.By // none: the list
	Page    *query.Page
	Pages   int
	Kinds   []string
	States  []state
	CSVOnly bool
	Today   string
	Yday    string
}

type state struct{ Letter, Meaning string }

func states() []state {
	var out []state
	for _, s := range query.States {
		out = append(out, state{string(s.Letter), s.Meaning})
	}
	return out
}

// fullPAN reports a full card number typed into the card field.
func fullPAN(card string) bool {
	card = strings.ReplaceAll(card, " ", "")
	return len(card) >= 13 && len(card) <= 19 && allDigits(card)
}

// hidePAN answers a query by full card number with a redirect to the same query by the card's
// keyed hash (and its masked form for the field), so that the number itself appears in no page,
// bookmark or history entry. It reports whether it answered.
func (c *Console) hidePAN(w http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	card := strings.ReplaceAll(q.Get("card"), " ", "")
	if !fullPAN(card) {
		return false
	}
	q.Set("panh", hex.EncodeToString(c.Journal.Vault.PANHash(card)))
	q.Set("card", spec.MaskPAN(card))
	http.Redirect(w, r, r.URL.Path+"?"+q.Encode(), http.StatusSeeOther)
	return true
}

func (c *Console) txnList(w http.ResponseWriter, r *http.Request, p *page) {
	if c.hidePAN(w, r) {
		return
	}
	p.Title = p.T("transactions")
	f := readForm(r, c.today())
	d := &txnListData{Form: f, Kinds: query.Kinds, States: states(), Today: c.today().Format("2006-01-02"), Yday: c.today().AddDate(0, 0, -1).Format("2006-01-02")}
	p.Data = d
	qf, err := f.filter(p.User)
	if err == errNotFound {
		c.notFound(w, p)
		return
	}
	if err == nil {
		qf.Limit, qf.Offset = PageSize, (f.Page-1)*PageSize
		d.Page, err = query.List(r.Context(), c.Journal, qf)
	}
	if err != nil {
		p.Error = err.Error()
		c.render(w, p, "txn_list.html", http.StatusBadRequest)
		return
	}
	d.Pages = int((d.Page.Total + PageSize - 1) / PageSize)
	d.CSVOnly = d.Page.Total > XLSXMaxRows
	c.render(w, p, "txn_list.html", http.StatusOK)
}

type summaryData struct {
	Form     form
	Kinds    []string
	States   []state
	By       query.By
	Tabs     []query.By
	Sum      *query.Summaries
	Columns  []string
	Meanings []string
}

func (c *Console) txnSummary(w http.ResponseWriter, r *http.Request, p *page) {
	if c.hidePAN(w, r) {
		return
	}
	p.Title = p.T("summary")
	f := readForm(r, c.today())
	by, err := query.ParseBy(r.URL.Query().Get("by"))
	if r.URL.Query().Get("by") == "" {
		by, err = query.ByDay, nil
	}
	d := &summaryData{Form: f, By: by, Kinds: query.Kinds, States: states(), Tabs: []query.By{query.ByDay, query.BySettle, query.ByMerchant, query.ByOrg}}
	for _, col := range query.Columns {
		d.Columns = append(d.Columns, p.T("col."+col.Head))
		d.Meanings = append(d.Meanings, col.Meaning)
	}
	p.Data = d
	var qf query.Filter
	if err == nil {
		qf, err = f.filter(p.User)
	}
	if err == errNotFound {
		c.notFound(w, p)
		return
	}
	if err == nil {
		d.Sum, err = query.Summarize(r.Context(), c.Journal, qf, by, p.merchantName)
	}
	if err != nil {
		p.Error = err.Error()
		c.render(w, p, "txn_summary.html", http.StatusBadRequest)
		return
	}
	c.render(w, p, "txn_summary.html", http.StatusOK)
}

// txnFor reads the transaction of the URL's id, or nil when it does not exist or lies outside
// the user's scope (the two are not told apart).
func (c *Console) txnFor(r *http.Request, u *backoffice.User) (*journal.Txn, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return nil, nil
	}
	t, err := c.Journal.ByID(r.Context(), id)
	if err != nil || t == nil {
		return nil, err
	}
	if !u.Scope().Allows(t.MID, t.TID, t.Operator) {
		return nil, nil
	}
	return t, nil
}

type detailData struct {
	T        *journal.Txn
	Explain  posswitch.Explanation
	Merchant string
	Orig     *journal.Txn
	Refund   *refundForm // the refund or void form and this purchase's refunds (refunds.go)
}

func (c *Console) txnDetail(w http.ResponseWriter, r *http.Request, p *page) {
	t, err := c.txnFor(r, p.User)
	if err != nil {
		c.fail(w, p, http.StatusServiceUnavailable, err.Error())
		return
	}
	if t == nil {
		c.audit(r, p.User, backoffice.ActDenied, "transaction "+r.PathValue("id")+" not found or outside scope", false)
		c.notFound(w, p)
		return
	}
	c.renderDetail(w, r, p, t, http.StatusOK)
}

func (c *Console) renderDetail(w http.ResponseWriter, r *http.Request, p *page, t *journal.Txn, status int) {
	p.Title = p.T("transaction") + " " + t.RRN
	d := &detailData{T: t, Explain: posswitch.Explain(t), Merchant: p.merchantName(t.MID)}
	if t.OrigID != nil {
		if o, err := c.Journal.ByID(r.Context(), *t.OrigID); err == nil && o != nil && p.User.Scope().Allows(o.MID, o.TID, o.Operator) {
			d.Orig = o
		}
	}
	d.Refund = c.refundSection(r, p, t)
	p.Data = d
	c.render(w, p, "txn_detail.html", status)
}

type receiptData struct {
	T         *journal.Txn
	Merchant  *terminals.Merchant
	Kind      string
	Reprinted string
	Signature bool
	CardOrg   string
}

// shownTxn is the transaction of the URL when the user may see it; otherwise it answers (404
// outside the user's scope, 503 when the journal fails) and returns nil.
func (c *Console) shownTxn(w http.ResponseWriter, r *http.Request, p *page) *journal.Txn {
	t, err := c.txnFor(r, p.User)
	if err != nil {
		c.fail(w, p, http.StatusServiceUnavailable, err.Error())
		return nil
	}
	if t == nil {
		c.notFound(w, p)
	}
	return t
}

// receipt is the 签购单 reprint of an approved transaction: a printable page marked as a
// reprint (重打印), with the masked card number only.
func (c *Console) receipt(w http.ResponseWriter, r *http.Request, p *page) {
	t := c.shownTxn(w, r, p)
	if t == nil {
		return
	}
	m := c.registry().Merchant(t.MID)
	if m == nil {
		m = &terminals.Merchant{MID: t.MID}
	}
	kinds := map[string]string{"purchase": "消费 SALE", "void": "消费撤销 VOID", "refund": "退货 REFUND", "balance": "余额查询 BALANCE", "reversal": "冲正 REVERSAL"}
	p.Title = p.T("receipt")
	// a 双免 purchase (contactless, no PIN: F22 072) needs no signature: the slip says 免签
	noSig := t.EntryMode == "072"
	p.Data = &receiptData{T: t, Merchant: m, Kind: kinds[t.Kind], Reprinted: c.Now().Format("2006-01-02 15:04:05"), Signature: !noSig, CardOrg: t.CardOrg}
	c.render(w, p, "receipt.html", http.StatusOK)
}
