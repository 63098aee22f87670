package console

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/registrydb"
)

// Editor applies registry changes: validated by the same code as the config file, written in
// one transaction (with its audit_log row) and applied live on every node. The registry
// database's Store is one; nil leaves the terminal and merchant pages read-only.
type Editor interface {
	CreateMerchant(ctx context.Context, who string, m terminals.MerchantSpec, whitelist string) (*registrydb.Change, error)
	UpdateMerchant(ctx context.Context, who string, m terminals.MerchantSpec, whitelist string) (*registrydb.Change, error)
	RegisterTerminal(ctx context.Context, who string, t terminals.TerminalSpec) (*registrydb.Change, error)
	SetTerminalEnabled(ctx context.Context, who, tid, mid string, on bool) (*registrydb.Change, error)
	SetTerminalQPS(ctx context.Context, who, tid, mid string, on bool) (*registrydb.Change, error)
	// Preview validates an edit like a change and returns the registry it would give, applying
	// nothing (the what-if preview).
	Preview(ctx context.Context, fn func(*terminals.Spec) error) (*registrydb.Change, error)
}

// changed reports a registry change on the page (or its error) and audits a refusal (an applied
// change is audited inside its own transaction by the registry's audit hook).
func (c *Console) changed(r *http.Request, p *page, what string, ch *registrydb.Change, err error) {
	if err != nil {
		c.audit(r, p.User, backoffice.ActConfigChange, what+" refused: "+err.Error(), false)
		p.Error = err.Error()
		return
	}
	if ch.Empty() {
		p.Flash = p.T("no_change")
		return
	}
	p.Flash = p.T("applied") + ": " + strings.Join(ch.Lines(), "; ")
}

// actorCtx carries who is asking into the registry's audit hook.
func actorCtx(r *http.Request, p *page) context.Context {
	return backoffice.WithActor(r.Context(), p.User, clientIP(r))
}

// mayEdit answers 403 to a role without the right, 501 where the registry is read-only.
func (c *Console) mayEdit(w http.ResponseWriter, p *page, action string) bool {
	if !p.Can(action) {
		c.forbidden(w, p)
		return false
	}
	if c.Edit == nil {
		c.fail(w, p, http.StatusNotImplemented, p.T("read_only"))
		return false
	}
	return true
}

func checked(r *http.Request, name string) *bool {
	v := r.PostForm.Get(name) == "on"
	return &v
}

func (c *Console) terminalRegister(w http.ResponseWriter, r *http.Request, p *page) {
	if !c.mayEdit(w, p, "terminals.edit") {
		return
	}
	f := r.PostForm
	t := terminals.TerminalSpec{TID: strings.TrimSpace(f.Get("tid")), MID: strings.TrimSpace(f.Get("mid")), Env: f.Get("env"),
		Serial: strings.TrimSpace(f.Get("serial")), TMK: strings.TrimSpace(f.Get("tmk")), QPS: f.Get("qps") == "on", Enabled: terminals.Bool(true)}
	ch, err := c.Edit.RegisterTerminal(actorCtx(r, p), p.User.Login, t)
	c.changed(r, p, "register terminal "+t.TID, ch, err)
	if err == nil {
		http.Redirect(w, r, "/terminals/"+t.MID+"/"+t.TID, http.StatusSeeOther)
		return
	}
	c.renderTerminals(w, r, p, t.MID, http.StatusBadRequest)
}

func (c *Console) terminalChange(w http.ResponseWriter, r *http.Request, p *page) {
	t := c.terminalFor(p, r)
	if t == nil {
		c.notFound(w, p)
		return
	}
	if !c.mayEdit(w, p, "terminals.edit") {
		return
	}
	ctx := actorCtx(r, p)
	var ch *registrydb.Change
	var err error
	switch a := r.PostForm.Get("action"); a {
	case "enable", "disable":
		ch, err = c.Edit.SetTerminalEnabled(ctx, p.User.Login, t.TID, t.MID, a == "enable")
	case "qps_on", "qps_off":
		ch, err = c.Edit.SetTerminalQPS(ctx, p.User.Login, t.TID, t.MID, a == "qps_on")
	default:
		err = errors.New("action: expected enable, disable, qps_on or qps_off, found " + a)
	}
	c.changed(r, p, "terminal "+t.TID, ch, err)
	status := http.StatusOK
	if err != nil {
		status = http.StatusBadRequest
	}
	c.renderTerminal(w, r, p, c.registry().Terminal(t.TID, t.MID), status)
}

// merchantSave creates (POST /merchants) or updates (POST /merchants/{mid}) a merchant; with
// action=preview it applies nothing and shows what the change would have decided differently.
func (c *Console) merchantSave(w http.ResponseWriter, r *http.Request, p *page) {
	if !c.mayEdit(w, p, "merchants.edit") {
		return
	}
	mid, create, m, wl := merchantSubmitted(r)
	if !create && c.registry().Merchant(mid) == nil {
		c.notFound(w, p)
		return
	}
	if r.PostForm.Get("action") == "preview" {
		c.merchantPreview(w, r, p, mid, create, m, wl)
		return
	}
	ctx := actorCtx(r, p)
	var ch *registrydb.Change
	var err error
	if create {
		ch, err = c.Edit.CreateMerchant(ctx, p.User.Login, m, wl)
	} else {
		ch, err = c.Edit.UpdateMerchant(ctx, p.User.Login, m, wl)
	}
	c.changed(r, p, "merchant "+mid, ch, err)
	if err != nil {
		if create {
			mid = "new"
		}
		c.renderMerchant(w, r, p, mid, &m, wl, http.StatusBadRequest)
		return
	}
	c.renderMerchant(w, r, p, mid, nil, "", http.StatusOK)
}

// merchantSubmitted reads the merchant form: the MID (from the path, or the form when creating),
// the merchant as submitted and its whitelist date.
func merchantSubmitted(r *http.Request) (mid string, create bool, m terminals.MerchantSpec, whitelist string) {
	f := r.PostForm
	mid = r.PathValue("mid")
	create = mid == ""
	if create {
		mid = strings.TrimSpace(f.Get("mid"))
	}
	m = terminals.MerchantSpec{MID: mid, Name: strings.TrimSpace(f.Get("name")), NameEN: strings.TrimSpace(f.Get("name_en")), MCC: strings.TrimSpace(f.Get("mcc")),
		Enabled: checked(r, "enabled"), Direct: checked(r, "direct"), QPS: f.Get("qps") == "on", QPSLimit: strings.TrimSpace(f.Get("qps_limit")),
		Refund: checked(r, "refund"), Acquirer: strings.TrimSpace(f.Get("acquirer"))}
	return mid, create, m, strings.TrimSpace(f.Get("whitelist"))
}
