package console_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	switchtest.Main(m, stopChrome)
}

var good = device.Chip("6222021234567890123", "2912", "123456")

// env is a running switch with its console, the demo users and their passwords.
type env struct {
	*switchtest.Switch
	base  string
	pw    map[string]string
	shift atomic.Int64 // added to the users' clock (session expiry tests)
}

func start(t *testing.T, o switchtest.Options) *env {
	s := switchtest.Start(t, o)
	require.NotNil(t, s.Console, "console not started")
	e := &env{Switch: s, base: "http://" + s.Console.Addr(), pw: map[string]string{}}
	for _, u := range s.DemoUsers {
		e.pw[u.Login] = u.Password
	}
	require.Len(t, e.pw, 5)
	s.Users.Now = func() time.Time { return time.Now().Add(time.Duration(e.shift.Load())) }
	return e
}

// client is one browser-like HTTP client (cookie jar, no redirects followed automatically).
type client struct {
	t    *testing.T
	e    *env
	http *http.Client
}

func (e *env) client(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, e: e, http: &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) get(path string) (int, string) {
	c.t.Helper()
	r, err := c.http.Get(c.e.base + path)
	require.NoError(c.t, err)
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

func (c *client) post(path string, v url.Values) (int, string, *http.Response) {
	c.t.Helper()
	r, err := c.http.PostForm(c.e.base+path, v)
	require.NoError(c.t, err)
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b), r
}

func (c *client) login(login, pw string) int {
	c.t.Helper()
	code, _, _ := c.post("/login", url.Values{"login": {login}, "password": {pw}})
	return code
}

func (e *env) as(t *testing.T, login string) *client {
	t.Helper()
	c := e.client(t)
	require.Equal(t, http.StatusSeeOther, c.login(login, e.pw[login]), "login %s", login)
	return c
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) csrf() string {
	c.t.Helper()
	_, body := c.get("/password")
	m := csrfRe.FindStringSubmatch(body)
	require.NotNil(c.t, m, "no CSRF token on the page")
	return m[1]
}

func TestPagesRender(t *testing.T) {
	e := start(t, switchtest.Options{})
	d := e.SignedOn("10000001")
	r, err := d.Purchase(good, 12345)
	require.NoError(t, err)
	require.Equal(t, rc.Approved, r.Code())
	for _, login := range []string{"admin", "ops", "shop-admin", "shop-op01", "shop-refund"} {
		c := e.as(t, login)
		for _, p := range []string{"/", "/txn", "/txn?day=today", "/txn/summary?by=org", "/txn/summary?by=merchant", "/monitor", "/password", "/terminals", "/terminals/898310058120001/10000001", "/merchants", "/merchants/898310058120001", "/users", "/audit", "/settlement"} {
			code, body := c.get(p)
			if code >= 500 || code == 200 && !strings.Contains(body, "</html>") {
				t.Errorf("%s %s: %d\n%s", login, p, code, body[max(0, len(body)-300):])
			}
		}
	}
	c := e.as(t, "shop-admin")
	_, body := c.get("/txn?day=today")
	require.Contains(t, body, "123.45")
	require.NotContains(t, body, "6222021234567890123")
	_ = backoffice.DemoMID
}

// TestCSRF: every form post needs the session's token; without it, or with another session's,
// nothing happens and the refusal is audited.
func TestCSRF(t *testing.T) {
	e := start(t, switchtest.Options{})
	c := e.as(t, "shop-admin")
	other := e.as(t, "admin")
	form := url.Values{"login": {"shop-op02"}, "password": {"abc12345"}, "role": {"merchant_operator"}}
	for name, tok := range map[string]string{"no token": "", "a wrong token": "x", "another session's token": other.csrf()} {
		v := url.Values{}
		for k, vs := range form {
			v[k] = vs
		}
		if tok != "" {
			v.Set("csrf", tok)
		}
		code, body, _ := c.post("/users", v)
		require.Equal(t, http.StatusForbidden, code, "%s: %s", name, body)
		require.Contains(t, body, "CSRF")
	}
	_, err := e.Users.UserByLogin(t.Context(), "shop-op02")
	require.ErrorIs(t, err, backoffice.ErrNoUser, "a forged form created a user")
	// password change and logout are forms too
	code, _, _ := c.post("/password", url.Values{"old": {e.pw["shop-admin"]}, "new": {"new12345"}, "again": {"new12345"}})
	require.Equal(t, http.StatusForbidden, code)
	code, _, _ = c.post("/logout", nil)
	require.Equal(t, http.StatusForbidden, code)
	// with the token it works
	form.Set("csrf", c.csrf())
	code, body, _ := c.post("/users", form)
	require.Equal(t, http.StatusOK, code, body)
	u, err := e.Users.UserByLogin(t.Context(), "shop-op02")
	require.NoError(t, err)
	require.Equal(t, backoffice.DemoMID, u.MID, "a merchant admin's user belongs to their merchant")
	// a login posted from another site is refused
	r, _ := http.NewRequest("POST", e.base+"/login", strings.NewReader(url.Values{"login": {"admin"}, "password": {e.pw["admin"]}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	es, err := e.Users.AuditLog(t.Context(), backoffice.AuditFilter{Action: backoffice.ActDenied})
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(es), 5)
	require.Contains(t, es[len(es)-1].Detail, "CSRF")
}

// TestLockoutAndAudit: five wrong passwords lock the account (even the right one is refused
// then), an administrator's enable lifts it; every attempt is in the audit log with its address.
func TestLockoutAndAudit(t *testing.T) {
	e := start(t, switchtest.Options{})
	c := e.client(t)
	for i := 1; i <= 5; i++ {
		require.Equal(t, http.StatusUnauthorized, c.login("shop-op01", "wrong1234"), "attempt %d", i)
	}
	code, body, _ := c.post("/login", url.Values{"login": {"shop-op01"}, "password": {e.pw["shop-op01"]}})
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, body, "锁定")
	require.Equal(t, http.StatusUnauthorized, c.login("nobody", "wrong1234"))
	a := e.as(t, "shop-admin")
	_, users := a.get("/users")
	require.Contains(t, users, "锁定至")
	u, _ := e.Users.UserByLogin(t.Context(), "shop-op01")
	code, _, _ = a.post(fmt.Sprintf("/users/%d", u.ID), url.Values{"csrf": {a.csrf()}, "action": {"enable"}})
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, http.StatusSeeOther, c.login("shop-op01", e.pw["shop-op01"]))

	es, err := e.Users.AuditLog(t.Context(), backoffice.AuditFilter{Limit: 100})
	require.NoError(t, err)
	count := map[string]int{}
	for _, x := range es {
		count[x.Action+" "+x.Login]++
		if x.Action != backoffice.ActConfigChange { // the config file's import at start has no address
			require.Equal(t, "127.0.0.1", x.IP, "from where: %+v", x)
		}
		require.False(t, x.At.IsZero())
	}
	require.Equal(t, 6, count["login_failed shop-op01"], "%v", count)
	require.Equal(t, 1, count["login_failed nobody"])
	require.Equal(t, 1, count["user_enable shop-admin"])
	require.Equal(t, 2, count["login shop-op01"]+count["login shop-admin"])
	// only the acquirer admin reads the audit log
	code, _ = a.get("/audit")
	require.Equal(t, http.StatusForbidden, code)
	code, body = e.as(t, "admin").get("/audit")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "login_failed")
	require.NotContains(t, body, "wrong1234", "no password in the audit log")

	// an export is audited with its filter and row count
	buy(t, e.SignedOn("10000001"), good, 100)
	code, csvBody := a.get("/txn/export?format=csv&day=today")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, csvBody, "1.00")
	es, _ = e.Users.AuditLog(t.Context(), backoffice.AuditFilter{Action: backoffice.ActExport})
	require.Len(t, es, 1)
	require.Contains(t, es[0].Detail, "csv, 1 rows")
}

// TestSessionExpiry: a session unused longer than console.session_idle ends (the next page asks
// to log in again), and so does any session after session_max.
func TestSessionExpiry(t *testing.T) {
	e := start(t, switchtest.Options{})
	c := e.as(t, "ops")
	code, _ := c.get("/txn")
	require.Equal(t, http.StatusOK, code)
	e.shift.Store(int64(29 * time.Minute))
	code, _ = c.get("/txn")
	require.Equal(t, http.StatusOK, code, "29 minutes idle: still in")
	e.shift.Store(int64(29*time.Minute + 31*time.Minute))
	r, err := c.http.Get(e.base + "/txn?day=today")
	require.NoError(t, err)
	r.Body.Close()
	require.Equal(t, http.StatusSeeOther, r.StatusCode)
	require.Contains(t, r.Header.Get("Location"), "/login?next=%2Ftxn%3Fday%3Dtoday")
	// the absolute limit
	e.shift.Store(0)
	c = e.as(t, "ops")
	for m := 20; m < 12*60; m += 20 {
		e.shift.Store(int64(time.Duration(m) * time.Minute))
		code, _ = c.get("/")
		require.Equal(t, http.StatusOK, code, "at %d minutes", m)
	}
	e.shift.Store(int64(12*time.Hour + time.Minute))
	code, _ = c.get("/")
	require.Equal(t, http.StatusSeeOther, code)
	// the cookie is HttpOnly, SameSite=Strict and expires with the session
	c2 := e.client(t)
	_, _, resp := c2.post("/login", url.Values{"login": {"admin"}, "password": {e.pw["admin"]}})
	ck := resp.Cookies()[0]
	require.True(t, ck.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.False(t, ck.Expires.IsZero())
}

// TestPasswordChange: the rules apply on the change-password page; a change ends the user's
// other sessions.
func TestPasswordChange(t *testing.T) {
	e := start(t, switchtest.Options{})
	c := e.as(t, "shop-refund")
	other := e.as(t, "shop-refund")
	old := e.pw["shop-refund"]
	for _, x := range []struct{ old, new, again, want string }{
		{old, "abc12", "abc12", "expected 6 to 20 characters, found 5"},
		{old, "abcdefghijklmnopqrstu1", "abcdefghijklmnopqrstu1", "expected 6 to 20 characters, found 22"},
		{old, "abcdefgh", "abcdefgh", "at least one letter and one digit"},
		{old, "new12345", "new12346", "两次输入的新密码不一致"},
		{"wrong123", "new12345", "new12345", "current password is wrong"},
	} {
		code, body, _ := c.post("/password", url.Values{"csrf": {c.csrf()}, "old": {x.old}, "new": {x.new}, "again": {x.again}})
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, body, x.want)
	}
	code, body, _ := c.post("/password", url.Values{"csrf": {c.csrf()}, "old": {old}, "new": {"new12345"}, "again": {"new12345"}})
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "密码已修改")
	code, _ = other.get("/")
	require.Equal(t, http.StatusSeeOther, code, "the other session ended")
	code, _ = c.get("/")
	require.Equal(t, http.StatusOK, code, "this session goes on")
	require.Equal(t, http.StatusUnauthorized, e.client(t).login("shop-refund", old))
	require.Equal(t, http.StatusSeeOther, e.client(t).login("shop-refund", "new12345"))
}

// TestTenantIsolationHTTP: every page, filter and export a merchant user can reach, tried with
// another merchant's data, answers 404 or leaves it out.
func TestTenantIsolationHTTP(t *testing.T) {
	e := start(t, switchtest.Options{})
	mine := buy(t, e.SignedOn("10000001"), good, 111)[0]
	theirs := buy(t, e.SignedOn("10000005"), good, 222)[0]
	tx, _ := e.Journal.ByRRN(t.Context(), theirs)
	for _, login := range []string{"shop-admin", "shop-op01", "shop-refund"} {
		c := e.as(t, login)
		for _, p := range []string{
			fmt.Sprintf("/txn/%d", tx.ID), fmt.Sprintf("/txn/%d/receipt", tx.ID),
			"/txn?mid=898310057320005", "/txn/summary?mid=898310057320005", "/txn/export?format=csv&mid=898310057320005",
			"/txn/export?format=xlsx&mid=898310057320005", "/terminals?mid=898310057320005", "/terminals/898310057320005/10000005",
			"/merchants/898310057320005",
		} {
			code, body := c.get(p)
			require.Contains(t, []int{403, 404}, code, "%s %s", login, p)
			require.NotContains(t, body, theirs)
			require.NotContains(t, body, "2.22")
		}
		code, body := c.get("/txn?rrn=" + theirs)
		require.Equal(t, 200, code)
		require.Contains(t, body, `id="empty"`, "%s searching the other merchant's RRN", login)
		for _, p := range []string{"/txn", "/txn?day=today", "/txn/summary?by=merchant", "/txn/export?format=csv", "/monitor", "/"} {
			code, body := c.get(p)
			require.Equal(t, 200, code, "%s %s", login, p)
			require.NotContains(t, body, theirs, "%s %s", login, p)
			require.NotContains(t, body, "898310057320005", "%s %s", login, p)
		}
		_, body = c.get("/txn?day=today")
		require.Contains(t, body, mine)
	}
	// the acquirer sees both
	_, body := e.as(t, "ops").get("/txn?day=today")
	require.Contains(t, body, mine)
	require.Contains(t, body, theirs)
}
