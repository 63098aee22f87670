package console

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/query"
	"github.com/shoudan/shoudan/switch/whatif"
	"github.com/shoudan/shoudan/terminals"
)

type homeData struct {
	Merchant  *terminals.Merchant
	Terminals int
	Merchants int
	Today     string
	ByOrg     *query.Summaries
}

// home is the merchant's basic information and today's data: income and count by card
// organisation (the acquirer's staff see every merchant's together).
func (c *Console) home(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title = p.T("home")
	reg := c.registry()
	d := &homeData{Today: c.today().Format("2006-01-02"), Merchants: len(reg.Merchants())}
	s := p.User.Scope()
	if !s.All {
		d.Merchant = reg.Merchant(s.MID)
		d.Merchants = 1
	}
	for _, t := range reg.Terminals() {
		if s.All || t.MID == s.MID && (len(s.TIDs) == 0 || slices.Contains(s.TIDs, t.TID)) {
			d.Terminals++
		}
	}
	qf, err := scope(query.Filter{From: c.today(), To: c.today()}, p.User)
	if err == nil {
		d.ByOrg, err = query.Summarize(r.Context(), c.Journal, qf, query.ByOrg, nil)
	}
	if err != nil {
		p.Error = err.Error()
	}
	p.Data = d
	c.render(w, p, "home.html", http.StatusOK)
}

// terminal pages

type terminalRow struct {
	T        *terminals.Terminal
	Merchant string
	State    *journal.TerminalState
}

type terminalListData struct {
	Rows      []terminalRow
	MID       string
	Merchants []*terminals.Merchant
	Total     int
	Shown     int
	CanEdit   bool
}

// visibleMID is the merchant whose terminals or details the user may see: their own, or any
// for the acquirer's staff.
func visibleMID(u *backoffice.User, mid string) (string, bool) {
	s := u.Scope()
	if s.All {
		return mid, true
	}
	if mid != "" && mid != s.MID {
		return "", false
	}
	return s.MID, true
}

func (c *Console) terminalList(w http.ResponseWriter, r *http.Request, p *page) {
	if !p.Can("terminals") {
		c.forbidden(w, p)
		return
	}
	mid, ok := visibleMID(p.User, r.URL.Query().Get("mid"))
	if !ok {
		c.notFound(w, p)
		return
	}
	c.renderTerminals(w, r, p, mid, http.StatusOK)
}

func (c *Console) renderTerminals(w http.ResponseWriter, r *http.Request, p *page, mid string, status int) {
	p.Title = p.T("terminals")
	reg := c.registry()
	d := &terminalListData{MID: mid, CanEdit: p.Can("terminals.edit") && c.Edit != nil}
	if p.User.Scope().All {
		d.Merchants = reg.Merchants()
	}
	const most = 500 // the generated load terminals run into thousands: show a page of them
	for _, t := range reg.Terminals() {
		if mid != "" && t.MID != mid {
			continue
		}
		d.Total++
		if len(d.Rows) < most {
			d.Rows = append(d.Rows, terminalRow{T: t, Merchant: p.merchantName(t.MID)})
		}
	}
	d.Shown = len(d.Rows)
	p.Data = d
	c.render(w, p, "terminals.html", status)
}

type terminalDetailData struct {
	T        *terminals.Terminal
	Merchant *terminals.Merchant
	State    *journal.TerminalState
	Last     *journal.Txn
	Recent   []*journal.Txn
	CanEdit  bool
}

func (c *Console) terminalFor(p *page, r *http.Request) *terminals.Terminal {
	mid, tid := r.PathValue("mid"), r.PathValue("tid")
	if _, ok := visibleMID(p.User, mid); !ok || !p.Can("terminals") {
		return nil
	}
	return c.registry().Terminal(tid, mid)
}

func (c *Console) terminalDetail(w http.ResponseWriter, r *http.Request, p *page) {
	t := c.terminalFor(p, r)
	if t == nil {
		c.notFound(w, p)
		return
	}
	c.renderTerminal(w, r, p, t, http.StatusOK)
}

func (c *Console) renderTerminal(w http.ResponseWriter, r *http.Request, p *page, t *terminals.Terminal, status int) {
	p.Title = p.T("terminal") + " " + t.TID
	d := &terminalDetailData{T: t, Merchant: c.registry().Merchant(t.MID), CanEdit: p.Can("terminals.edit") && c.Edit != nil && !t.Generated}
	var err error
	if d.State, err = c.Journal.TerminalState(r.Context(), t.MID, t.TID); err == nil {
		d.Last, err = c.Journal.Last(r.Context(), t.MID, t.TID, "", "")
	}
	if err == nil {
		var pg *query.Page
		if pg, err = query.List(r.Context(), c.Journal, query.Filter{MID: t.MID, TID: t.TID, Limit: 10}); err == nil {
			d.Recent = pg.Rows
		}
	}
	if err != nil {
		p.Error = err.Error()
	}
	p.Data = d
	c.render(w, p, "terminal.html", status)
}

// merchant pages

type merchantListData struct {
	Rows []*terminals.Merchant
	QPS  int64
}

func (c *Console) merchantList(w http.ResponseWriter, r *http.Request, p *page) {
	if !p.Can("merchants") {
		c.forbidden(w, p)
		return
	}
	p.Title = p.T("merchants")
	reg := c.registry()
	p.Data = &merchantListData{Rows: reg.Merchants(), QPS: reg.Rules.QPSLimit}
	c.render(w, p, "merchants.html", http.StatusOK)
}

type merchantData struct {
	M         *terminals.Merchant
	Form      merchantForm
	New       bool
	Terminals []*terminals.Terminal
	QPSLimit  int64
	CanEdit   bool
	Preview   *whatif.Report // what the submitted change would have decided differently
}

// merchantForm is the edit form's values: the merchant's, or what was submitted and refused.
type merchantForm struct {
	MID, Name, NameEN, MCC, QPSLimit, Acquirer, Whitelist string
	Enabled, Direct, QPS, Refund                          bool
}

func formOf(m *terminals.Merchant) merchantForm {
	f := merchantForm{MID: m.MID, Name: m.Name, NameEN: m.NameEN, MCC: m.MCC, Acquirer: m.Acquirer, Enabled: m.Enabled, Direct: m.Direct, QPS: m.QPS, Refund: m.RefundAllowed}
	if m.QPSLimit > 0 {
		f.QPSLimit = terminals.FormatAmount(m.QPSLimit)
	}
	if !m.QPSRegistered.IsZero() {
		f.Whitelist = m.QPSRegistered.Format("2006-01-02")
	}
	return f
}

func specForm(m *terminals.MerchantSpec, wl string) merchantForm {
	b := func(p *bool) bool { return p != nil && *p }
	return merchantForm{MID: m.MID, Name: m.Name, NameEN: m.NameEN, MCC: m.MCC, QPSLimit: m.QPSLimit, Acquirer: m.Acquirer, Whitelist: wl,
		Enabled: b(m.Enabled), Direct: b(m.Direct), QPS: m.QPS, Refund: b(m.Refund)}
}

func (c *Console) merchantDetail(w http.ResponseWriter, r *http.Request, p *page) {
	mid := r.PathValue("mid")
	if _, ok := visibleMID(p.User, mid); !ok && mid != "new" {
		c.notFound(w, p)
		return
	}
	c.renderMerchant(w, r, p, mid, nil, "", http.StatusOK)
}

// renderMerchant shows a merchant (mid "new": the create form); submitted, when set, refills
// the form after a refused change.
func (c *Console) renderMerchant(w http.ResponseWriter, r *http.Request, p *page, mid string, submitted *terminals.MerchantSpec, wl string, status int) {
	c.renderMerchantPreview(w, r, p, mid, submitted, wl, nil, status)
}

// renderMerchantPreview is renderMerchant with a what-if preview of the submitted change.
func (c *Console) renderMerchantPreview(w http.ResponseWriter, r *http.Request, p *page, mid string, submitted *terminals.MerchantSpec, wl string, preview *whatif.Report, status int) {
	reg := c.registry()
	d := &merchantData{M: reg.Merchant(mid), QPSLimit: reg.Rules.QPSLimit, CanEdit: p.Can("merchants.edit") && c.Edit != nil}
	if mid == "new" {
		if !d.CanEdit {
			c.notFound(w, p)
			return
		}
		d.New, d.M = true, &terminals.Merchant{Enabled: true, Direct: true, RefundAllowed: true}
	}
	if d.M == nil {
		c.notFound(w, p)
		return
	}
	d.Form, d.Preview = formOf(d.M), preview
	if submitted != nil {
		d.Form = specForm(submitted, wl)
	}
	for _, t := range reg.Terminals() {
		if t.MID == mid && len(d.Terminals) < 100 {
			d.Terminals = append(d.Terminals, t)
		}
	}
	p.Title = p.T("merchant") + " " + d.M.MID
	if d.New {
		p.Title = p.T("new_merchant")
	}
	p.Data = d
	c.render(w, p, "merchant.html", status)
}

// users and audit

type usersData struct {
	Users []*backoffice.User
	Roles []backoffice.Role
	MID   string
}

func (c *Console) userList(w http.ResponseWriter, r *http.Request, p *page) {
	if !p.Can("users") {
		c.forbidden(w, p)
		return
	}
	c.renderUsers(w, r, p, http.StatusOK)
}

func (c *Console) renderUsers(w http.ResponseWriter, r *http.Request, p *page, status int) {
	p.Title = p.T("users")
	mid := ""
	roles := backoffice.Roles
	if !p.Can("users.all") {
		mid = p.User.MID
		roles = []backoffice.Role{backoffice.MerchantOperator, backoffice.RefundReviewer, backoffice.MerchantAdmin}
	}
	us, err := c.Users.Users(r.Context(), mid)
	if err != nil {
		p.Error = err.Error()
	}
	p.Data = &usersData{Users: us, Roles: roles, MID: mid}
	c.render(w, p, "users.html", status)
}

// userAdd creates a user. A merchant admin creates users of their own merchant only (operators,
// refund reviewers, other admins); an acquirer admin any.
func (c *Console) userAdd(w http.ResponseWriter, r *http.Request, p *page) {
	if !p.Can("users") {
		c.forbidden(w, p)
		return
	}
	f := r.PostForm
	n := backoffice.NewUser{Login: strings.TrimSpace(f.Get("login")), Name: strings.TrimSpace(f.Get("name")), Password: f.Get("password"),
		Role: backoffice.Role(f.Get("role")), MID: strings.TrimSpace(f.Get("mid")), Operator: strings.TrimSpace(f.Get("operator")), CreatedBy: p.User.Login}
	for _, t := range strings.FieldsFunc(f.Get("tids"), func(r rune) bool { return r == ',' || r == ' ' }) {
		n.TIDs = append(n.TIDs, t)
	}
	if !p.Can("users.all") {
		if n.Role.Acquirer() {
			c.forbidden(w, p)
			return
		}
		n.MID = p.User.MID
	}
	var err error
	if n.MID != "" && c.registry().Merchant(n.MID) == nil {
		err = fmt.Errorf("mid: no merchant %q", n.MID)
	}
	for _, tid := range n.TIDs {
		if err == nil && c.registry().Terminal(tid, n.MID) == nil {
			err = fmt.Errorf("tids: merchant %s has no terminal %s", n.MID, tid)
		}
	}
	if err == nil {
		_, err = c.Users.AddUser(r.Context(), n)
	}
	c.audit(r, p.User, backoffice.ActUserAdd, fmt.Sprintf("%s role %s mid %s%s", n.Login, n.Role, n.MID, errSuffix(err)), err == nil)
	if err != nil {
		p.Error = err.Error()
		c.renderUsers(w, r, p, http.StatusBadRequest)
		return
	}
	p.Flash = p.T("user_added") + " " + n.Login
	c.renderUsers(w, r, p, http.StatusOK)
}

// userChange disables or enables a user (which also lifts a lockout).
func (c *Console) userChange(w http.ResponseWriter, r *http.Request, p *page) {
	if !p.Can("users") {
		c.forbidden(w, p)
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	u, err := c.Users.UserByID(r.Context(), id)
	if err != nil || !p.Can("users.all") && (u.MID != p.User.MID || u.Role.Acquirer()) {
		c.notFound(w, p)
		return
	}
	if u.ID == p.User.ID {
		p.Error = p.T("not_yourself")
		c.renderUsers(w, r, p, http.StatusBadRequest)
		return
	}
	disable := r.PostForm.Get("action") == "disable"
	err = c.Users.SetDisabled(r.Context(), u.ID, disable)
	act := backoffice.ActUserEnable
	if disable {
		act = backoffice.ActUserDisable
	}
	c.audit(r, p.User, act, u.Login+errSuffix(err), err == nil)
	if err != nil {
		p.Error = err.Error()
	}
	c.renderUsers(w, r, p, http.StatusOK)
}

type auditData struct {
	Entries []backoffice.Entry
	Login   string
	Action  string
	Next    int64
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, p *page) {
	if !p.Can("audit") {
		c.forbidden(w, p)
		return
	}
	p.Title = p.T("audit")
	q := r.URL.Query()
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	d := &auditData{Login: q.Get("login"), Action: q.Get("action")}
	var err error
	d.Entries, err = c.Users.AuditLog(r.Context(), backoffice.AuditFilter{Login: d.Login, Action: d.Action, BeforeID: before, Limit: 100})
	if err != nil {
		p.Error = err.Error()
	}
	if len(d.Entries) == 100 {
		d.Next = d.Entries[99].ID
	}
	p.Data = d
	c.render(w, p, "audit.html", http.StatusOK)
}

var _ = context.Background
