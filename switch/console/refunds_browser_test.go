package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/refunds"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/shoudan/shoudan/terminals/device"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/xuri/excelize/v2"
)

// bought makes an approved purchase daysAgo days ago on terminal 10000001 (operator 01) and
// returns its journal row.
func bought(t *testing.T, e *env, d *device.Terminal, amount int64, daysAgo int) *journal.Txn {
	t.Helper()
	if daysAgo > 0 {
		e.Switch.Switch.Now = func() time.Time { return time.Now().AddDate(0, 0, -daysAgo) }
		defer func() { e.Switch.Switch.Now = time.Now }()
	}
	rrn := buy(t, d, good, amount)[0]
	row, err := e.Journal.ByRRN(t.Context(), rrn)
	require.NoError(t, err)
	require.NotNil(t, row)
	return row
}

// TestBrowserRefunds drives the refund pages in Chromium: a direct refund from a transaction's
// detail page; a refund over what is left refused with the rule's reason; a void of today's
// purchase; a batch upload with a good, a bad and a duplicate row (uploaded twice: refunded
// once); review mode, where an operator applies, the reviewer cannot decide her own application
// and approves the operator's, which only then is sent.
func TestBrowserRefunds(t *testing.T) {
	e := start(t, switchtest.Options{})
	ctx := t.Context()
	d := e.SignedOn("10000001")
	admin := e.browser(t).as("shop-admin")

	// a direct refund, then one over what is left
	p := bought(t, e, d, 10000, 3)
	admin.open(fmt.Sprintf("/txn/%d", p.ID))
	assert.Equal(t, "100.00", admin.text("#refundable"))
	admin.run(chromedp.SetValue(chromedp.ID("refund-amount"), "30.00"), chromedp.SendKeys(chromedp.ID("refund-reason"), "顾客退货"))
	require.Equal(t, http.StatusOK, admin.click("#refund-submit"))
	assert.Contains(t, admin.text("#flash"), "退款成功", "the issuer answered within the page's wait")
	assert.Equal(t, "70.00", admin.text("#refundable"))
	rows := admin.rows("#txn-refunds")
	require.Len(t, rows, 1)
	assert.Equal(t, "30.00", rows[0][2])
	admin.screenshot("refund")

	admin.run(chromedp.SetValue(chromedp.ID("refund-amount"), "80.00"))
	require.Equal(t, http.StatusOK, admin.click("#refund-submit"))
	msg := admin.text("#error")
	assert.Contains(t, msg, "exceeds what is left to refund (7000 of 10000)")
	assert.Contains(t, msg, rc.InvalidAmount)
	assert.Equal(t, "70.00", admin.text("#refundable"), "nothing more refunded")

	// a console void of today's purchase
	v := bought(t, e, d, 2500, 0)
	admin.open(fmt.Sprintf("/txn/%d", v.ID))
	assert.Contains(t, admin.text("#refund-submit"), "撤销")
	require.Equal(t, http.StatusOK, admin.click("#refund-submit"))
	assert.Contains(t, admin.text("#flash"), "退款成功")
	vr, _ := e.Journal.ByID(ctx, v.ID)
	assert.Equal(t, byte(journal.Voided), vr.State, "the purchase is voided")
	assert.Contains(t, admin.text("#detail"), "已撤销")

	// batch upload: the template, then a good row, a bad row and a duplicate of the good one
	b1 := bought(t, e, d, 5000, 2)
	admin.open("/refunds/batch")
	tpl := admin.download("#template")
	x, err := excelize.OpenFile(tpl)
	require.NoError(t, err)
	head, err := x.GetRows(x.GetSheetList()[0])
	require.NoError(t, err)
	x.Close()
	assert.Equal(t, refunds.BatchHeader, head[0])
	file := filepath.Join(t.TempDir(), "refunds.xlsx")
	f := excelize.NewFile()
	sheet := f.GetSheetList()[0]
	for i, row := range [][]string{head[0],
		{b1.RRN, b1.LocalDay.Format("2006-01-02"), "10.00", "good"},
		{"12345", "2026-13-01", "abc", "bad"},
		{b1.RRN, b1.LocalDay.Format("2006-01-02"), "10.00", "good"},
	} {
		for j, v := range row {
			cell, _ := excelize.CoordinatesToCellName(j+1, i+1)
			require.NoError(t, f.SetCellStr(sheet, cell, v))
		}
	}
	require.NoError(t, f.SaveAs(file))
	f.Close()
	upload := func() [][]string {
		admin.open("/refunds/batch")
		admin.run(chromedp.SetUploadFiles(chromedp.ID("file"), []string{file}))
		require.Equal(t, http.StatusOK, admin.click("#upload-button"))
		return admin.rows("#batch-rows")
	}
	br := upload()
	require.Len(t, br, 3)
	assert.Equal(t, "退款成功", br[0][5], "%v", br[0])
	assert.Equal(t, "格式错误", br[1][5])
	assert.Contains(t, br[1][7], "expected 12 digits")
	assert.Equal(t, "重复行", br[2][5])
	assert.Contains(t, br[2][7], "row 2")
	res := admin.download("#result")
	rx, err := excelize.OpenFile(res)
	require.NoError(t, err)
	rr, err := rx.GetRows(rx.GetSheetList()[0])
	rx.Close()
	require.NoError(t, err)
	require.Len(t, rr, 4)
	assert.Equal(t, "succeeded", rr[1][5])
	assert.Equal(t, "invalid", rr[2][5])
	assert.Equal(t, "duplicate", rr[3][5])
	again := upload()
	assert.Contains(t, admin.text("#flash"), "未重复退款", "the same file again")
	assert.Equal(t, br[0][8], again[0][8], "the same refund")
	o, _ := e.Journal.ByID(ctx, b1.ID)
	assert.Equal(t, int64(1000), o.Refunded, "refunded once")

	// review mode: the merchant admin turns it on
	admin.open("/refunds/settings")
	admin.run(chromedp.Click(chromedp.ID("review")))
	require.Equal(t, http.StatusOK, admin.click("#save"))
	assert.Contains(t, admin.text("#flash"), "已保存")

	r := bought(t, e, d, 8800, 4)
	op := e.browser(t).as("shop-op01")
	op.open(fmt.Sprintf("/txn/%d", r.ID))
	op.run(chromedp.SetValue(chromedp.ID("refund-amount"), "18.00"))
	require.Equal(t, http.StatusOK, op.click("#refund-submit"))
	assert.Contains(t, op.text("#flash"), "已申请")
	time.Sleep(300 * time.Millisecond)
	ro, _ := e.Journal.ByID(ctx, r.ID)
	assert.Equal(t, int64(0), ro.Refunded, "an application sends nothing")

	rev := e.browser(t).as("shop-refund")
	// the reviewer's own application: no approve button, and a forced POST is refused
	rev.open(fmt.Sprintf("/txn/%d", r.ID))
	rev.run(chromedp.SetValue(chromedp.ID("refund-amount"), "1.00"))
	require.Equal(t, http.StatusOK, rev.click("#refund-submit"))
	ownID := refundID(t, rev.text("#flash"))
	rev.open(fmt.Sprintf("/refunds/%d", ownID))
	assert.Contains(t, rev.text("#own-note"), "不能审核自己")
	hc := e.as(t, "shop-refund")
	code, body, _ := hc.post(fmt.Sprintf("/refunds/%d/approve", ownID), url.Values{"csrf": {hc.csrf()}})
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, body, "不能审核自己")

	rev.open("/refunds?state=applied")
	apps := rev.rows("#refunds")
	require.Len(t, apps, 2)
	assert.True(t, contains(apps, "shop-op01") && contains(apps, "18.00"), "%v", apps)
	opID := 0
	for _, a := range apps {
		if a[8] == "shop-op01" {
			fmt.Sscan(a[0], &opID)
		}
	}
	require.NotZero(t, opID)
	rev.click(fmt.Sprintf("#refund-%d a", opID))
	rev.run(chromedp.SendKeys(chromedp.ID("note"), "小票已核对"))
	require.Equal(t, http.StatusOK, rev.click("#approve"))
	assert.Equal(t, "退款成功", rev.text("#refund-state"))
	assert.Contains(t, rev.text("#decided-by"), "shop-refund")
	hist := rev.rows("#history")
	require.Len(t, hist, 4)
	for i, want := range []string{"已申请", "已审核", "已发送", "退款成功"} {
		assert.Equal(t, want, hist[i][1])
	}
	rev.screenshot("refund-review")
	ro, _ = e.Journal.ByID(ctx, r.ID)
	assert.Equal(t, int64(1800), ro.Refunded, "sent once approved")
}

var flashID = regexp.MustCompile(`#(\d+)`)

func refundID(t *testing.T, flash string) int {
	t.Helper()
	m := flashID.FindStringSubmatch(flash)
	require.NotNil(t, m, "refund id in %q", flash)
	var id int
	fmt.Sscan(m[1], &id)
	return id
}
