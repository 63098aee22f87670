package console_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrowserWhatIfPreview: an operator lowers a merchant's 双免 limit, presses preview and sees
// the journaled transactions of the last 7 days the change would have declined (nothing applied
// yet: the next purchase is still decided by the old limit), then applies it; the audit log has
// the preview and the change.
func TestBrowserWhatIfPreview(t *testing.T) {
	e := start(t, switchtest.Options{})
	d := e.SignedOn("10000001")
	over := buy(t, d, tap, 8000, 9000) // taps over the coming 50.00 limit
	buy(t, d, tap, 3000)               // and one within it
	buy(t, d, good, 20000)             // chip with PIN: no 双免 rule applies

	b := e.browser(t).as("ops")
	b.open("/merchants/898310058120001")
	b.run(chromedp.SetValue(chromedp.ID("m-qps-limit"), "50.00"))
	b.click("#m-preview")
	assert.Contains(t, b.text("#preview-count"), "2")
	assert.Equal(t, "merchant 898310058120001: qps_limit - → 50.00", b.text("#preview-diff"), "the change, and nothing else")
	rows := b.rows("#preview-changes")
	require.Len(t, rows, 2, "%v", rows)
	for _, rrn := range over {
		assert.True(t, contains(rows, rrn), "%s in %v", rrn, rows)
	}
	assert.True(t, contains(rows, "55 qps-limit"), "%v", rows)
	b.screenshot("whatif-preview")

	r, err := d.Purchase(tap, 8000)
	require.NoError(t, err)
	assert.Equal(t, rc.Approved, r.Code(), "a preview applies nothing")

	b.click("#m-save") // the refilled form's Apply
	assert.Contains(t, b.text("#qps-limit"), "50.00")
	r, err = d.Purchase(tap, 8000)
	require.NoError(t, err)
	assert.Equal(t, rc.IncorrectPIN, r.Code(), "applied: 80.00 is over the merchant's new 50.00 limit")

	a := e.browser(t).as("admin")
	a.open("/audit?action=whatif_preview")
	audit := a.rows("#audit")
	require.Len(t, audit, 1, "%v", audit)
	assert.True(t, contains(audit, "ops"), "%v", audit)
	a.open("/audit?action=config_change")
	assert.NotEmpty(t, a.rows("#audit"))
}
