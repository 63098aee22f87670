package whatif

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/shoudan/shoudan/terminals"
)

// WriteTable prints the report for an operator: the config changes, the impact by rule and by
// merchant, then the changed transactions.
func WriteTable(w io.Writer, r *Report) error {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("what-if over %s .. %s", r.From.Format("2006-01-02"), r.To.Format("2006-01-02"))
	if r.MID != "" {
		p(", merchant %s", r.MID)
	}
	p("\n\ndraft against the live config:\n")
	if len(r.ConfigChanges) == 0 {
		p("  (no change to the rules, merchants or terminals the acquirer checks read)\n")
	}
	for _, c := range r.ConfigChanges {
		p("  %s\n", c)
	}
	p("\n%d transactions replayed: %d would be decided differently (%s)", r.Examined, r.Changed, terminals.FormatAmount(r.ChangedAmount))
	if n := undetermined(r); n > 0 {
		p(", %d undetermined", n)
	}
	p("\n")
	if len(r.Groups) > 0 {
		p("\nby rule:\n")
		for _, g := range r.Groups {
			p("  %s\n", g.Summary())
		}
	}
	if len(r.Merchants) > 0 {
		p("\nby merchant:\n")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  MID\tname\tchanged\tamount\tshare")
		for _, m := range r.Merchants {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%d%%\n", m.MID, m.Name, m.Count, terminals.FormatAmount(m.Amount), (m.Count*100+r.Changed/2)/r.Changed)
		}
		tw.Flush()
	}
	if n := undetermined(r); n > 0 {
		p("\nundetermined (the draft lets them past the check that declined them, on to a check that reads keys or\njournal state of that moment and was never evaluated):\n")
		for _, k := range sortedKeys(r.Undetermined) {
			p("  %d at %s\n", r.Undetermined[k], k)
		}
	}
	if len(r.Changes) > 0 {
		p("\nchanged transactions:\n")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  RRN\ttime\tMID\tTID\tkind\tentry\tamount\twas\twould be\treason")
		for _, c := range r.Changes {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.RRN, c.At.Local().Format("2006-01-02 15:04:05"), c.MID, c.TID,
				c.Kind, c.EntryMode, terminals.FormatAmount(c.Amount), c.Was, c.Would, c.Reason)
		}
		tw.Flush()
		if r.Truncated {
			p("  (%d of %d listed: --max-changes 0 lists all)\n", len(r.Changes), r.Changed)
		}
	}
	return nil
}

// WriteCSV writes the changed transactions, one row each, with a header.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"rrn", "time", "mid", "tid", "kind", "entry_mode", "amount", "was_code", "was_rule", "would_code", "would_rule", "reason"})
	for _, c := range r.Changes {
		_ = cw.Write([]string{c.RRN, c.At.Format(time.RFC3339), c.MID, c.TID, c.Kind, c.EntryMode, terminals.FormatAmount(c.Amount),
			c.Was.Code, c.Was.Rule, c.Would.Code, c.Would.Rule, c.Reason})
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the whole report.
func WriteJSON(w io.Writer, r *Report) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

func undetermined(r *Report) int {
	n := 0
	for _, v := range r.Undetermined {
		n += v
	}
	return n
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(a, b int) bool {
		if m[out[a]] != m[out[b]] {
			return m[out[a]] > m[out[b]]
		}
		return out[a] < out[b]
	})
	return out
}
