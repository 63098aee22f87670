package console

import (
	"fmt"
	"net/http"
	"time"

	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/whatif"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/registrydb"
)

// previewDays is how far back a console preview replays the journal.
const previewDays = 7

// maxPreviewChanges bounds the changed transactions a preview lists (the counts cover all).
const maxPreviewChanges = 50

// merchantPreview answers "preview" on the merchant form: the registry with the submitted change
// (validated like a save, applied nowhere), replayed over the merchant's transactions of the last
// seven days by what-if, shown above the refilled form so that the operator can then apply it.
// The preview is audited; the apply is audited by the registry like any change.
func (c *Console) merchantPreview(w http.ResponseWriter, r *http.Request, p *page, mid string, create bool, m terminals.MerchantSpec, wl string) {
	live := c.registry()
	shown := mid
	if create {
		shown = "new"
	}
	ch, err := c.Edit.Preview(r.Context(), registrydb.MerchantUpdate(m, wl))
	if err != nil {
		c.audit(r, p.User, backoffice.ActWhatIf, "preview merchant "+mid+" refused: "+err.Error(), false)
		p.Error = err.Error()
		c.renderMerchant(w, r, p, shown, &m, wl, http.StatusBadRequest)
		return
	}
	today := c.Now()
	y, mo, d := today.Date()
	to := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	rep, err := whatif.Run(r.Context(), c.Journal, live, ch.Registry, whatif.Options{From: to.AddDate(0, 0, -(previewDays - 1)), To: to, MID: mid, MaxChanges: maxPreviewChanges})
	if err != nil {
		c.fail(w, p, http.StatusServiceUnavailable, p.T("unavailable"))
		return
	}
	c.audit(r, p.User, backoffice.ActWhatIf, fmt.Sprintf("preview merchant %s over %d days: %d of %d transactions would be decided differently",
		mid, previewDays, rep.Changed, rep.Examined), true)
	p.Flash = ""
	c.renderMerchantPreview(w, r, p, shown, &m, wl, rep, http.StatusOK)
}
