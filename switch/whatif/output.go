package whatif

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"time"

	"github.com/shoudan/shoudan/terminals"
)

// WriteCSV writes the changed transactions, one row each, with a header.
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"rrn", "time", "mid", "tid", "kind", "entry_mode", "amount", "answered", "was_code", "was_rule", "would_code", "would_rule", "reason"})
	for _, c := range r.Changes {
		_ = cw.Write([]string{c.RRN, c.At.Format(time.RFC3339), c.MID, c.TID, c.Kind, c.EntryMode, terminals.FormatAmount(c.Amount),
			c.Answered, c.Was.Code, c.Was.Rule, c.Would.Code, c.Would.Rule, c.Reason})
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
