package posswitch

import (
	"fmt"
	"io"
	"strings"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/query"
	"github.com/shoudan/shoudan/terminals"
)

// Check is one acquirer check a transaction passed, or the rule that decided it.
type Check struct{ Rule, Doc string }

// Explanation is a journaled transaction's decision in words: what `shoudan explain` prints and
// the console's detail page shows.
type Explanation struct {
	Summary   string   // kind, amount, card, entry mode
	Where     string   // terminal, merchant, batch, STAN, RRN, time
	Answer    string   // the code, its meaning and the state now
	Facts     []string // authorisation code, issuer's own code, upstream trace, refunded amount
	Passed    []Check
	DecidedBy Check
	Why       string
}

// Explain puts a transaction's decision into words.
func Explain(t *journal.Txn) Explanation {
	d := rc.Describe(t.RespCode)
	e := Explanation{
		Summary: fmt.Sprintf("%s %s of %s yuan on card %s, entry mode %s", t.Kind, t.MTI, terminals.FormatAmount(t.Amount), t.PANMasked, t.EntryMode),
		Where: fmt.Sprintf("terminal %s merchant %s (%s listener), batch %s STAN %s, RRN %s, at %s", t.TID, t.MID, t.Env, t.Batch, t.STAN, t.RRN,
			t.CreatedAt.Local().Format("2006-01-02 15:04:05")),
		Answer:    fmt.Sprintf("answered %s %s / %s (%s); now %s", t.RespCode, d.Chinese, d.English, d.Action, query.StateName(t.State)),
		DecidedBy: Check{t.Rule, RuleDoc[t.Rule]},
		Why:       t.Reason,
	}
	if t.AuthCode != "" {
		e.Facts = append(e.Facts, "authorisation code "+t.AuthCode)
	}
	if t.Operator != "" {
		e.Facts = append(e.Facts, "operator "+t.Operator)
	}
	if t.Trace != "" {
		for _, r := range strings.Split(t.Trace, ",") {
			e.Passed = append(e.Passed, Check{r, RuleDoc[r]})
		}
	}
	if t.IssuerCode != "" && t.IssuerCode != t.RespCode {
		e.Facts = append(e.Facts, "the issuer answered "+t.IssuerCode)
	}
	if t.WentUpstream {
		e.Facts = append(e.Facts, fmt.Sprintf("went to the issuer with trace %s at %s", t.UpTrace, t.UpTime))
	}
	if t.Refunded > 0 {
		e.Facts = append(e.Facts, fmt.Sprintf("refunded so far: %s yuan", terminals.FormatAmount(t.Refunded)))
	}
	return e
}

// WithRoute adds the issuer route the transaction took (journal.Route; nil: none recorded).
func (e Explanation) WithRoute(r *journal.Route) Explanation {
	switch {
	case r == nil:
	case r.Endpoint == "":
		e.Facts = append(e.Facts, fmt.Sprintf("issuer route %s: no endpoint of it was up", r.Route))
	case r.Secondary:
		e.Facts = append(e.Facts, fmt.Sprintf("issuer route %s, via its secondary endpoint %s (the primary was down)", r.Route, r.Endpoint))
	default:
		e.Facts = append(e.Facts, fmt.Sprintf("issuer route %s, via its primary endpoint %s", r.Route, r.Endpoint))
	}
	return e
}

// Write prints the explanation as text.
func (e Explanation) Write(w io.Writer) {
	fmt.Fprintln(w, e.Summary)
	fmt.Fprintf(w, "  %s\n  %s\n", e.Where, e.Answer)
	for _, f := range e.Facts {
		if strings.HasPrefix(f, "authorisation") {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	if len(e.Passed) > 0 {
		fmt.Fprintln(w, "  checks passed:")
		for _, c := range e.Passed {
			fmt.Fprintf(w, "    ✓ %-22s %s\n", c.Rule, c.Doc)
		}
	}
	fmt.Fprintf(w, "  decided by: %s — %s\n", e.DecidedBy.Rule, e.DecidedBy.Doc)
	fmt.Fprintf(w, "  why: %s\n", e.Why)
	fmt.Fprintln(w, "  (the rows of §7 and their codes: docs/protocol.md in the repository)")
	for _, f := range e.Facts {
		if !strings.HasPrefix(f, "authorisation") {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	fmt.Fprintln(w)
}
