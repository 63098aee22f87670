package console_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/xuri/excelize/v2"
)

var tap = device.Tap("6222021234567890123", "2912", "")

// buy makes approved purchases on a signed-on terminal and returns their RRNs.
func buy(t *testing.T, d *device.Terminal, card device.Card, amounts ...int64) []string {
	t.Helper()
	var rrns []string
	for _, a := range amounts {
		r, err := d.Purchase(card, a)
		require.NoError(t, err)
		require.Equal(t, rc.Approved, r.Code(), "purchase of %d fen", a)
		rrns = append(rrns, r.Resp.RRN)
	}
	return rrns
}

// TestBrowserRoles: every demo role logs in through the login form and sees its own menu; the
// language switch turns the labels English and back.
func TestBrowserRoles(t *testing.T) {
	e := start(t, switchtest.Options{})
	for _, c := range []struct {
		login, role  string
		menu, hidden []string
	}{
		{"admin", "收单管理员", []string{"商户管理", "审计日志", "操作员管理", "终端管理"}, nil},
		{"ops", "收单运营", []string{"商户管理", "终端管理"}, []string{"审计日志", "操作员管理"}},
		{"shop-admin", "商户管理员", []string{"操作员管理", "终端管理"}, []string{"商户管理", "审计日志"}},
		{"shop-op01", "商户操作员", []string{"交易查询", "实时监控"}, []string{"终端管理", "操作员管理", "商户管理", "审计日志"}},
		{"shop-refund", "退款审核员", []string{"交易查询"}, []string{"终端管理", "操作员管理", "商户管理", "审计日志"}},
	} {
		b := e.browser(t).as(c.login)
		who := b.text("#whoami")
		assert.Contains(t, who, c.role, c.login)
		nav := b.text("header nav")
		for _, m := range c.menu {
			assert.Contains(t, nav, m, "%s's menu", c.login)
		}
		for _, m := range c.hidden {
			assert.NotContains(t, nav, m, "%s's menu", c.login)
		}
		if c.login == "shop-admin" {
			assert.Contains(t, b.text("#merchant-info"), "898310058120001")
			b.click("#lang")
			assert.Contains(t, b.text("#whoami"), "Merchant admin")
			assert.Contains(t, b.text("header nav"), "Transactions")
			b.click("#lang")
			assert.Contains(t, b.text("#whoami"), "商户管理员")
		}
		// logging out ends the session: the next page asks to log in again
		b.click("#logout")
		b.run(chromedp.WaitVisible(chromedp.ID("login-form")))
		b.open("/txn")
		b.run(chromedp.WaitVisible(chromedp.ID("login-form")))
	}
	b := e.browser(t)
	b.login("admin", "wrong-password1")
	assert.Contains(t, b.text("#error"), "登录名或密码错误")
}

// TestBrowserQueryAndExcel: purchases by terminals over TCP, then a query with filters in the
// browser (rows checked), the operator's narrower view, and the Excel download opened and
// checked row by row with its total.
func TestBrowserQueryAndExcel(t *testing.T) {
	e := start(t, switchtest.Options{})
	d1 := e.SignedOn("10000001") // operator 01 (the device's default)
	d7 := e.SignedOn("10000007")
	r1 := buy(t, d1, good, 1000, 2550, 9999)
	r7 := buy(t, d7, good, 3000, 120000)
	other := e.SignedOn("10000005") // another merchant
	buy(t, other, good, 4242)

	b := e.browser(t).as("shop-admin")
	b.open("/txn?day=today")
	rows := b.rows("#txns")
	require.Len(t, rows, 5, "the merchant's five purchases, not the other merchant's")
	assert.False(t, contains(rows, "42.42"))
	assert.Contains(t, b.text("#total"), "5")
	b.screenshot("transactions")

	// filters typed into the form: terminal 10000007, amount from 50.00
	b.run(chromedp.SetValue(chromedp.ID("tid"), "10000007"), chromedp.Click(chromedp.CSS("details summary")),
		chromedp.SetValue(chromedp.ID("min"), "50.00"))
	b.click("#search")
	rows = b.rows("#txns")
	require.Len(t, rows, 1)
	assert.True(t, contains(rows, "1200.00") && contains(rows, r7[1]), "%v", rows)
	url := value(b, chromedp.Location())
	assert.Contains(t, url, "tid=10000007")
	assert.Contains(t, url, "min=50.00") // bookmarkable

	// by RRN and by card last 4 (never the full number on the page)
	b.open("/txn?day=today&rrn=" + r1[1])
	rows = b.rows("#txns")
	require.Len(t, rows, 1)
	assert.True(t, contains(rows, "25.50"))
	b.open("/txn?day=today&card=6222021234567890123")
	require.Len(t, b.rows("#txns"), 5, "full PAN through the keyed hash")
	assert.NotContains(t, value(b, chromedp.Location()), "6222021234567890123", "the URL carries the hash, not the number")
	html := b.html()
	assert.NotContains(t, html, "6222021234567890123")
	assert.Contains(t, html, "622202*********0123")

	// summary tabs
	b.open("/txn/summary?day=today&by=org")
	sum := b.rows("#summary")
	require.Len(t, sum, 1)
	assert.Equal(t, "CUP", sum[0][0])
	b.screenshot("summary")

	// the Excel download of the whole day, opened and checked
	b.open("/txn?day=today")
	path := b.download("#xlsx")
	x, err := excelize.OpenFile(path)
	require.NoError(t, err)
	defer x.Close()
	xr, err := x.GetRows("交易 Transactions")
	require.NoError(t, err)
	require.Len(t, xr, 1+5+1, "header, five rows, total")
	assert.Equal(t, "参考号 RRN", xr[0][10])
	var sumYuan float64
	seen := map[string]bool{}
	for _, r := range xr[1:6] {
		assert.Equal(t, "898310058120001", r[4])
		v, err := strconv.ParseFloat(strings.ReplaceAll(r[14], ",", ""), 64)
		require.NoError(t, err)
		sumYuan += v
		seen[r[10]] = true
		assert.NotContains(t, strings.Join(r, " "), "6222021234567890123")
	}
	for _, rrn := range append(r1, r7...) {
		assert.True(t, seen[rrn], "RRN %s in the file", rrn)
	}
	assert.InDelta(t, 10+25.50+99.99+30+1200, sumYuan, 0.001)
	assert.Equal(t, "合计 Total", xr[6][0])
	assert.Equal(t, "5", xr[6][1])
	assert.Equal(t, "1,365.49", xr[6][14])

	// the operator (terminal 10000001, operator 01) sees only their three
	op := e.browser(t).as("shop-op01")
	op.open("/txn?day=today")
	rows = op.rows("#txns")
	require.Len(t, rows, 3)
	for _, r := range r7 {
		assert.False(t, contains(rows, r))
	}
	assert.Equal(t, 404, op.status("/txn?day=today&tid=10000007"))
}

// TestBrowserMonitor: the live monitor shows a purchase made by a terminal over TCP without a
// reload (server-sent events fed by the journal's NOTIFY).
func TestBrowserMonitor(t *testing.T) {
	e := start(t, switchtest.Options{})
	d := e.SignedOn("10000001")
	buy(t, d, good, 100)
	b := e.browser(t).as("shop-admin")
	b.open("/monitor")
	b.run(chromedp.WaitVisible(chromedp.CSS("#monitor-rows tr")))
	require.Len(t, b.rows("#monitor"), 1)
	// the page is open; a purchase arrives
	rrn := buy(t, d, good, 7788)[0]
	require.NoError(t, b.poll(fmt.Sprintf(`document.querySelector("#monitor-rows").innerText.includes(%q)`, rrn), 10*time.Second),
		"the monitor did not show RRN %s", rrn)
	rows := b.rows("#monitor")
	require.Len(t, rows, 2)
	assert.Contains(t, strings.Join(rows[0], " "), "77.88", "newest first")
	b.screenshot("monitor")
	// more than 20: the newest 20
	for range 21 {
		buy(t, d, good, 1)
	}
	require.NoError(t, b.poll(`document.querySelectorAll("#monitor-rows tr").length == 20 && !document.querySelector("#monitor-rows").innerText.includes("77.88")`, 10*time.Second))
}

// TestBrowserQPSChange: the acquirer changes a merchant's 双免 limit and whitelist date in the
// console, and the next terminal purchase is decided by the new values.
func TestBrowserQPSChange(t *testing.T) {
	e := start(t, switchtest.Options{})
	d := e.SignedOn("10000001")
	r, err := d.Purchase(tap, 8000) // 80.00 tap, no PIN: within the rules' 1000.00
	require.NoError(t, err)
	require.Equal(t, rc.Approved, r.Code())

	b := e.browser(t).as("ops")
	b.open("/merchants/898310058120001")
	b.screenshot("merchant")
	b.run(chromedp.SetValue(chromedp.ID("m-qps-limit"), "50.00"))
	b.click("#m-save")
	assert.Contains(t, b.text("#flash"), "50.00")
	assert.Contains(t, b.text("#qps-limit"), "50.00")
	r, err = d.Purchase(tap, 8000)
	require.NoError(t, err)
	assert.Equal(t, rc.IncorrectPIN, r.Code(), "80.00 over the merchant's new 50.00 limit: PIN required")
	r, err = d.Purchase(tap, 4000)
	require.NoError(t, err)
	assert.Equal(t, rc.Approved, r.Code(), "40.00 within it")

	// a whitelist registration of today takes effect tomorrow (T+1): 双免 answers 03 now
	today := time.Now().Format("2006-01-02")
	b.run(chromedp.SetValue(chromedp.ID("m-whitelist"), today))
	b.click("#m-save")
	assert.Contains(t, b.text("#qps-registered"), today)
	r, err = d.Purchase(tap, 1000)
	require.NoError(t, err)
	assert.Equal(t, rc.InvalidMerchant, r.Code())
	// an invalid value is refused with the reason, and nothing changes
	b.run(chromedp.SetValue(chromedp.ID("m-qps-limit"), "12.345"))
	b.click("#m-save")
	assert.NotEmpty(t, b.text("#error"))
	assert.Contains(t, b.text("#qps-limit"), "50.00")

	// the change is in the audit log with who and from where
	a := e.browser(t).as("admin")
	a.open("/audit?action=config_change")
	rows := a.rows("#audit")
	require.NotEmpty(t, rows)
	assert.True(t, contains(rows, "ops") && contains(rows, "127.0.0.1"), "%v", rows)
	a.screenshot("audit")
}

// TestBrowserTenantIsolation: a merchant operator who edits the URL to another merchant's
// transaction (or another terminal's, or an export for another merchant) gets 404.
func TestBrowserTenantIsolation(t *testing.T) {
	e := start(t, switchtest.Options{})
	own := buy(t, e.SignedOn("10000001"), good, 500)[0]
	sibling := buy(t, e.SignedOn("10000007"), good, 600)[0] // same merchant, another terminal
	foreign := buy(t, e.SignedOn("10000005"), good, 700)[0] // another merchant
	id := func(rrn string) int64 {
		tx, err := e.Journal.ByRRN(t.Context(), rrn)
		require.NoError(t, err)
		return tx.ID
	}
	b := e.browser(t).as("shop-op01")
	b.open(fmt.Sprintf("/txn/%d", id(own)))
	assert.Equal(t, "issuer", b.text("#rule"))
	assert.Contains(t, b.text("#explain"), "passed through")
	b.screenshot("detail")
	b.open(fmt.Sprintf("/txn/%d/receipt", id(own)))
	assert.Contains(t, b.text("#receipt"), "622202*********0123")
	b.screenshot("receipt")
	for _, path := range []string{
		fmt.Sprintf("/txn/%d", id(foreign)), fmt.Sprintf("/txn/%d", id(sibling)), fmt.Sprintf("/txn/%d/receipt", id(foreign)),
		"/txn?mid=898310057320005", "/txn/export?format=csv&mid=898310057320005", "/terminals/898310057320005/10000005", "/merchants/898310057320005",
	} {
		assert.Contains(t, []int{403, 404}, b.status(path), "shop-op01 opening %s", path)
		assert.NotContains(t, b.html(), foreign)
	}
}

// TestScreenshots takes the README's pictures of the pages not covered above (set
// SHOUDAN_SCREENSHOTS=docs/screenshots to write them).
func TestScreenshots(t *testing.T) {
	if os.Getenv("SHOUDAN_SCREENSHOTS") == "" {
		t.Skip("set SHOUDAN_SCREENSHOTS to a directory to take the README's screenshots")
	}
	e := start(t, switchtest.Options{})
	d := e.SignedOn("10000001")
	buy(t, d, good, 3500, 12800, 999)
	buy(t, d, tap, 2600)
	b := e.browser(t)
	b.open("/login")
	b.screenshot("login")
	b.as("shop-admin")
	b.open("/")
	b.screenshot("home")
	b.run(chromedp.EmulateViewport(390, 780, chromedp.EmulateMobile))
	b.open("/txn?day=today")
	b.screenshot("phone-transactions")
	a := e.browser(t).as("ops")
	a.open("/terminals/898310058120001/10000001")
	a.screenshot("terminal")
}
