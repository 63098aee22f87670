// Package console is the back office on the web: thin HTTP handlers and html/template pages over
// package query (transactions, summaries, exports), package backoffice (users, sessions, audit)
// and the registry. It has no SQL and no business rules of its own: every read is narrowed by the
// user's scope (backoffice.Scope), every form carries the session's CSRF token, every export and
// change is written to the audit log.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/refunds"
	"github.com/shoudan/shoudan/switch/settlement"
	"github.com/shoudan/shoudan/terminals"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Registry is what the console needs of the merchant and terminal registry: the current snapshot
// for every node, and validated live changes. Edit is nil where the registry cannot be changed
// from the console (then the edit pages say so).
type Registry interface {
	Get() *terminals.Registry
}

// Console is the back-office web application.
type Console struct {
	Journal  *journal.Journal
	Users    *backoffice.Store
	Registry Registry
	Edit     Editor // nil: the registry is read-only here
	// Refunds are the back office's refunds (refunds.go); nil: no refund pages.
	Refunds *refunds.Service
	// Settler is settlement (settlement pages, statements); nil: the pages say it is off.
	Settler *settlement.Settler
	Log     *slog.Logger
	// Secure marks cookies Secure (the console is served over TLS).
	Secure bool
	Now    func() time.Time

	tmpl    *template.Template
	monitor *hub
	srv     *http.Server
	addr    string
}

// New builds a console; Start serves it.
func New(j *journal.Journal, users *backoffice.Store, reg Registry, log *slog.Logger) (*Console, error) {
	c := &Console{Journal: j, Users: users, Registry: reg, Log: log, Now: time.Now}
	t, err := template.New("").Funcs(funcs).ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	c.tmpl = t
	c.monitor = newHub(c)
	return c, nil
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves until Close.
func (c *Console) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("console.addr: %w", err)
	}
	c.addr = ln.Addr().String()
	if err := c.monitor.start(); err != nil {
		ln.Close()
		return err
	}
	c.srv = &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go c.srv.Serve(ln)
	return nil
}

// Addr is the bound address.
func (c *Console) Addr() string { return c.addr }

// Close stops serving (open event streams end).
func (c *Console) Close() {
	if c.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c.monitor.stop()
		_ = c.srv.Shutdown(ctx)
		_ = c.srv.Close()
	}
}

// Handler is the console's routes.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServer(http.FS(static))))
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("GET /lang/{lang}", c.setLang)
	auth := func(pattern string, h func(http.ResponseWriter, *http.Request, *page)) {
		mux.Handle(pattern, c.authed(h))
	}
	auth("POST /logout", c.logout)
	auth("GET /{$}", c.home)
	auth("GET /password", c.passwordPage)
	auth("POST /password", c.changePassword)
	auth("GET /txn", c.txnList)
	auth("GET /txn/summary", c.txnSummary)
	auth("GET /txn/export", c.txnExport)
	auth("GET /txn/{id}", c.txnDetail)
	auth("GET /txn/{id}/receipt", c.receipt)
	auth("GET /monitor", c.monitorPage)
	auth("GET /monitor/events", c.monitorEvents)
	auth("GET /terminals", c.terminalList)
	auth("POST /terminals", c.terminalRegister)
	auth("GET /terminals/{mid}/{tid}", c.terminalDetail)
	auth("POST /terminals/{mid}/{tid}", c.terminalChange)
	auth("GET /merchants", c.merchantList)
	auth("POST /merchants", c.merchantSave)
	auth("GET /merchants/{mid}", c.merchantDetail)
	auth("POST /merchants/{mid}", c.merchantSave)
	auth("GET /users", c.userList)
	auth("POST /users", c.userAdd)
	auth("POST /users/{id}", c.userChange)
	auth("GET /audit", c.auditPage)
	c.refundRoutes(mux, auth)
	auth("GET /settlement", c.settleList)
	auth("GET /settlement/{date}/{mid}", c.settleDetail)
	auth("GET /settlement/{date}/{mid}/{file}", c.settleStatement)
	return securityHeaders(mux)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

const sessionCookie = "shoudan_session"

// page is what every authenticated handler gets: the session, the language and the values
// every template reads.
type page struct {
	Session *backoffice.Session
	User    *backoffice.User
	Lang    string
	Title   string
	Path    string // the request's path and query, for the language switch
	Flash   string
	Error   string
	Data    any
	c       *Console
	r       *http.Request
}

// T translates a label into the page's language.
func (p *page) T(key string) string { return translate(p.Lang, key) }

// Can reports whether the user may do action (for the menu).
func (p *page) Can(action string) bool { return p.User.Can(action) }

// CSRF is the session's form token.
func (p *page) CSRF() string { return p.Session.CSRF }

// Other is the other language, for the switch.
func (p *page) Other() string {
	if p.Lang == "en" {
		return "zh"
	}
	return "en"
}

func (c *Console) lang(r *http.Request) string {
	if ck, err := r.Cookie("lang"); err == nil && ck.Value == "en" {
		return "en"
	}
	return "zh"
}

func (c *Console) setLang(w http.ResponseWriter, r *http.Request) {
	l := r.PathValue("lang")
	if l != "en" {
		l = "zh"
	}
	http.SetCookie(w, &http.Cookie{Name: "lang", Value: l, Path: "/", MaxAge: 365 * 24 * 3600, HttpOnly: true, Secure: c.Secure, SameSite: http.SameSiteLaxMode})
	back := r.URL.Query().Get("back")
	if u, err := url.Parse(back); err != nil || back == "" || u.IsAbs() || u.Host != "" || !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// clientIP is where a request came from (the connection's address: the console does not trust
// forwarding headers it cannot verify).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authed wraps a handler: a live session or the login page; on POST the form's CSRF token.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *page)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := ""
		if ck, err := r.Cookie(sessionCookie); err == nil {
			tok = ck.Value
		}
		se, err := c.Users.Session(r.Context(), tok)
		if err != nil {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/events") && !strings.HasSuffix(r.URL.Path, "/export") {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in, or the session has expired: log in again", http.StatusUnauthorized)
			return
		}
		p := &page{Session: se, User: se.User, Lang: c.lang(r), Path: r.URL.RequestURI(), c: c, r: r}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil || !se.CheckCSRF(r.PostForm.Get("csrf")) {
				c.audit(r, se.User, backoffice.ActDenied, "form without a valid CSRF token: "+r.URL.Path, false)
				http.Error(w, "the form's security token is missing or wrong (CSRF): reload the page and try again", http.StatusForbidden)
				return
			}
		}
		h(w, r, p)
	})
}

func (c *Console) audit(r *http.Request, u *backoffice.User, action, detail string, ok bool) {
	login := ""
	if u == nil {
		login = r.PostForm.Get("login")
	}
	if err := c.Users.Audit(r.Context(), u, login, action, detail, clientIP(r), ok); err != nil {
		c.Log.Error("audit log write failed", "action", action, "err", err.Error())
	}
}

// render writes a page.
func (c *Console) render(w http.ResponseWriter, p *page, name string, status int) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := c.tmpl.ExecuteTemplate(w, name, p); err != nil {
		c.Log.Error("console template", "page", name, "err", err.Error())
	}
}

// fail answers an error page; status 404 for anything outside the user's scope (it does not say
// whether the thing exists).
func (c *Console) fail(w http.ResponseWriter, p *page, status int, msg string) {
	p.Title, p.Error = http.StatusText(status), msg
	c.render(w, p, "error.html", status)
}

var errNotFound = errors.New("not found")

func (c *Console) notFound(w http.ResponseWriter, p *page) {
	c.fail(w, p, http.StatusNotFound, p.T("not_found"))
}

func (c *Console) forbidden(w http.ResponseWriter, p *page) {
	c.audit(p.r, p.User, backoffice.ActDenied, p.r.Method+" "+p.r.URL.Path, false)
	c.fail(w, p, http.StatusForbidden, p.T("forbidden"))
}

func (c *Console) registry() *terminals.Registry { return c.Registry.Get() }

// merchantName is a merchant's name in the page's language.
func (p *page) merchantName(mid string) string {
	m := p.c.registry().Merchant(mid)
	if m == nil {
		return ""
	}
	if p.Lang == "en" && m.NameEN != "" {
		return m.NameEN
	}
	return m.Name
}
