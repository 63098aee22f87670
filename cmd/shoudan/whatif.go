package main

import (
	"fmt"
	"os"
	"time"

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
				return fmt.Errorf("draft %s: %w", draft, err)
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
				write = func(f *os.File, r *whatif.Report) error { return whatif.WriteTable(f, r) }
			case "csv":
				write = func(f *os.File, r *whatif.Report) error { return whatif.WriteCSV(f, r) }
			case "json":
				write = func(f *os.File, r *whatif.Report) error { return whatif.WriteJSON(f, r) }
			default:
				return fmt.Errorf("--format: expected table, csv or json, found %q", format)
			}
			_, lreg, err := loadConfig(live)
			if err != nil {
				return fmt.Errorf("live config: %w", err)
			}
			return withJournal(cmd.Context(), live, func(j *journal.Journal) error {
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
