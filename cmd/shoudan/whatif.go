package main

import (
	"fmt"
	"io"
	"os"
	"time"

	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/terminals"

	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/whatif"
	"github.com/spf13/cobra"
)

func whatifCmd() *cobra.Command {
	var draft, live, from, to, mid, format, out string
	var max int
	cmd := &cobra.Command{
		Use:   "whatif --config DRAFT.yaml [--from D1 --to D2] [--mid M]",
		Short: "Replay journaled transactions against a draft config: what it would decide differently",
		Long: `Replays the journaled transactions of a period through the acquirer checks that read the config
(protocol §7 rows 2-12 and 18-20: terminal registration, device serial and SDK version, merchant
flags, MCC and cash MCCs, 双免 enablement, whitelist and limit, refund permission and window) as the
draft would have decided them, next to what was decided. Checks that read the keys or the journal
of that moment (sign-on, MAC, device check value, originals) keep their outcome; a transaction the
draft would send on to such a check that was never evaluated is counted as undetermined.

It reads the journal in a read-only transaction and sends nothing upstream. The draft is
validated like 'config check': an invalid draft is refused with its line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if draft == "" {
				return fmt.Errorf("--config: expected the draft config file to replay against, found none")
			}
			_, dreg, err := app.Load(draft)
			if err != nil {
				return fmt.Errorf("draft refused: %w", err)
			}
			today := time.Now()
			o := whatif.Options{MID: mid, MaxChanges: max}
			if o.From, err = day(from, today.AddDate(0, 0, -6)); err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			if o.To, err = day(to, today); err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if o.To.Before(o.From) {
				return fmt.Errorf("--to %s is before --from %s", o.To.Format("2006-01-02"), o.From.Format("2006-01-02"))
			}
			var write func(*os.File, *whatif.Report) error
			switch format {
			case "table":
				write = func(f *os.File, r *whatif.Report) error { return writeWhatIf(f, r) }
			case "csv":
				write = func(f *os.File, r *whatif.Report) error { return whatif.WriteCSV(f, r) }
			case "json":
				write = func(f *os.File, r *whatif.Report) error { return whatif.WriteJSON(f, r) }
			default:
				return fmt.Errorf("--format: expected table, csv or json, found %q", format)
			}
			return withTool(cmd.Context(), live, app.OpenExistingJournal, func(_ *app.Config, lreg *terminals.Registry, j *journal.Journal) error {
				r, err := whatif.Run(cmd.Context(), j, lreg, dreg, o)
				if err != nil {
					return err
				}
				f := os.Stdout
				if out != "" {
					if f, err = os.Create(out); err != nil {
						return err
					}
					defer f.Close()
				}
				return write(f, r)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&draft, "config", "c", "", "the draft config to replay against (required)")
	f.StringVar(&live, "live", "", "the live config: its journal is replayed, its registry is what the draft is compared with (default: data/shoudan.yaml)")
	f.StringVar(&from, "from", "", "first local day, YYYY-MM-DD (default: 6 days ago)")
	f.StringVar(&to, "to", "", "last local day, YYYY-MM-DD (default: today)")
	f.StringVar(&mid, "mid", "", "only this merchant")
	f.StringVar(&format, "format", "table", "table, csv (the changed transactions) or json (the whole report)")
	f.StringVarP(&out, "output", "o", "", "write to this file instead of standard output")
	f.IntVar(&max, "max-changes", 200, "list at most this many changed transactions (0 = all; counts always cover all)")
	return cmd
}

// day parses a local day YYYY-MM-DD, or returns def's day when s is empty.
func day(s string, def time.Time) (time.Time, error) {
	if s == "" {
		y, m, d := def.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("expected a day YYYY-MM-DD, found %q", s)
	}
	return t, nil
}

// writeWhatIf prints a what-if report for an operator: the config changes, the impact by rule
// and by merchant, then the changed transactions.
func writeWhatIf(w io.Writer, r *whatif.Report) error {
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
	p("\n%d transactions replayed: %d would be decided differently (%s yuan)", r.Examined, r.Changed, terminals.FormatAmount(r.ChangedAmount))
	if n := r.UndeterminedTotal(); n > 0 {
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
		tb := table{right: map[int]bool{3: true, 4: true, 5: true}}
		tb.row("", "MID", "name", "changed", "amount", "share")
		for _, m := range r.Merchants {
			tb.row("", m.MID, m.Name, fmt.Sprint(m.Count), terminals.FormatAmount(m.Amount), fmt.Sprintf("%d%%", (m.Count*100+r.Changed/2)/r.Changed))
		}
		if err := tb.write(w); err != nil {
			return err
		}
	}
	if r.UndeterminedTotal() > 0 {
		p("\nundetermined: the draft lets them past the check that declined them, on to a check that reads the keys\n" +
			"or the journal of that moment and was never evaluated then:\n")
		for rule, n := range r.Undetermined {
			p("  %d at %s (%s)\n", n, rule, posswitch.RuleDoc[rule])
		}
	}
	if len(r.Changes) > 0 {
		p("\nchanged transactions (answered: the code the terminal got):\n")
		tb := table{right: map[int]bool{7: true}}
		tb.row("", "RRN", "time", "MID", "TID", "kind", "entry", "amount", "answered", "was", "would be", "reason")
		for _, c := range r.Changes {
			tb.row("", c.RRN, c.At.Local().Format("2006-01-02 15:04:05"), c.MID, c.TID, c.Kind, c.EntryMode,
				terminals.FormatAmount(c.Amount), c.Answered, c.Was.String(), c.Would.String(), c.Reason)
		}
		if err := tb.write(w); err != nil {
			return err
		}
		if r.Truncated {
			p("  (%d of %d listed: --max-changes 0 lists all)\n", len(r.Changes), r.Changed)
		}
	}
	return nil
}
