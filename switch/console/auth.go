package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/shoudan/shoudan/switch/backoffice"
)

type loginData struct {
	Next  string
	Login string
}

func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.HasPrefix(next, "/login") {
		return "/"
	}
	return next
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	p := &page{Lang: c.lang(r), Path: r.URL.RequestURI(), c: c, r: r}
	p.Title = p.T("login")
	p.Data = loginData{Next: safeNext(r.URL.Query().Get("next"))}
	c.render(w, p, "login.html", http.StatusOK)
}

// login checks the password; the login form needs no CSRF token of a session (there is none
// yet), SameSite=Strict cookies and the Origin check keep other sites from logging a browser in.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	p := &page{Lang: c.lang(r), Path: r.URL.RequestURI(), c: c, r: r}
	p.Title = p.T("login")
	if err := r.ParseForm(); err != nil || !sameOrigin(r) {
		http.Error(w, "a login from another site is refused", http.StatusForbidden)
		return
	}
	login, pw := strings.TrimSpace(r.PostForm.Get("login")), r.PostForm.Get("password")
	next := safeNext(r.PostForm.Get("next"))
	u, err := c.Users.Authenticate(r.Context(), login, pw)
	if err != nil {
		detail := err.Error()
		c.audit(r, u, backoffice.ActLoginFailed, detail, false)
		p.Data = loginData{Next: next, Login: login}
		switch {
		case errors.Is(err, backoffice.ErrLocked):
			p.Error = p.T("locked")
		case errors.Is(err, backoffice.ErrDisabled):
			p.Error = p.T("disabled")
		case errors.Is(err, backoffice.ErrBadLogin):
			p.Error = p.T("bad_login")
		default:
			c.Log.Error("console login", "err", err.Error())
			p.Error = p.T("unavailable")
		}
		c.render(w, p, "login.html", http.StatusUnauthorized)
		return
	}
	se, err := c.Users.NewSession(r.Context(), u, clientIP(r))
	if err != nil {
		c.Log.Error("console session", "err", err.Error())
		p.Error = p.T("unavailable")
		c.render(w, p, "login.html", http.StatusServiceUnavailable)
		return
	}
	c.audit(r, u, backoffice.ActLogin, "role "+string(u.Role), true)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: se.Token, Path: "/", Expires: se.Expires, HttpOnly: true,
		Secure: c.Secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// sameOrigin refuses a form posted from another origin (when the browser says where it came from).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	o = strings.TrimPrefix(strings.TrimPrefix(o, "http://"), "https://")
	return o == r.Host
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, p *page) {
	_ = c.Users.EndSession(r.Context(), p.Session)
	c.audit(r, p.User, backoffice.ActLogout, "", true)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: c.Secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (c *Console) passwordPage(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title = p.T("change_password")
	c.render(w, p, "password.html", http.StatusOK)
}

func (c *Console) changePassword(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title = p.T("change_password")
	old, pw, again := r.PostForm.Get("old"), r.PostForm.Get("new"), r.PostForm.Get("again")
	var err error
	if pw != again {
		err = errors.New(p.T("passwords_differ"))
	} else {
		err = c.Users.ChangePassword(r.Context(), p.User.ID, old, pw, p.Session)
	}
	c.audit(r, p.User, backoffice.ActPasswordChange, errText(err), err == nil)
	if err != nil {
		p.Error = err.Error()
		c.render(w, p, "password.html", http.StatusBadRequest)
		return
	}
	p.Flash = p.T("password_changed")
	c.render(w, p, "password.html", http.StatusOK)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
