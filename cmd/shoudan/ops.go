package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/shoudan/shoudan/spec/money"
	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/journal/pginstance"
	"github.com/shoudan/shoudan/switch/query"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/registrydb"
	"github.com/spf13/cobra"
)

// withJournal opens the journal of the config (adopting the private PostgreSQL of a running
// switch, or starting it for the duration of the command).
func withJournal(ctx context.Context, cfgPath string, f func(*journal.Journal) error) error {
	return withTool(ctx, cfgPath, app.OpenExistingJournal, func(_ *app.Config, _ *terminals.Registry, j *journal.Journal) error { return f(j) })
}

// withTool loads the config, opens its journal with open (app.OpenExistingJournal for tools that
// only read an existing journal) and runs f; the private PostgreSQL it started is stopped after.
func withTool(ctx context.Context, cfgPath string, open func(context.Context, *app.Config, *slog.Logger) (*journal.Journal, *pginstance.Instance, error),
	f func(*app.Config, *terminals.Registry, *journal.Journal) error) error {
	c, reg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	j, pg, err := open(ctx, c, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer func() {
		j.Close()
		if pg != nil && !pg.Adopted() {
			_ = pg.Stop()
		}
	}()
	return f(c, reg, j)
}

func explainCmd(cfgPath *string) *cobra.Command {
	var tid, stan, mid, from, to string
	c := &cobra.Command{
		Use:   "explain [RRN]",
		Short: "Explain a journaled transaction: what it was, the checks it passed and the rule that gave its code",
		Long: fmt.Sprintf(`Find a transaction by RRN, or by --tid and --stan (newest first), and explain its decision in words.
An RRN is looked for from today back %d days (newest first), or over the days --from and --to give.`, journal.RRNLookback),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			days, err := rrnDays(from, to)
			if err != nil {
				return err
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				var ts []*journal.Txn
				switch {
				case len(args) == 1:
					t, err := j.ByRRNBetween(cmd.Context(), args[0], days[0], days[1])
					if err != nil {
						return err
					}
					if t == nil {
						return fmt.Errorf("no transaction with RRN %s journaled from %s to %s (give --from and --to to look at other days)",
							args[0], days[0].Format("2006-01-02"), days[1].Format("2006-01-02"))
					}
					ts = append(ts, t)
				case tid != "" && stan != "":
					p, err := query.List(cmd.Context(), j, query.Filter{TID: tid, MID: mid, STAN: stan, Limit: 5})
					if err != nil {
						return err
					}
					ts = p.Rows
				default:
					return fmt.Errorf("explain: give an RRN, or --tid and --stan")
				}
				if len(ts) == 0 {
					return fmt.Errorf("no such transaction in the journal (a request declined before authentication, 30/97/77/A0, is not journaled: see shoudan rejects --tid %s)", orAny(tid))
				}
				for _, t := range ts {
					r, err := j.Route(cmd.Context(), t)
					if err != nil {
						return err
					}
					posswitch.Explain(t).WithRoute(r).Write(cmd.OutOrStdout())
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&tid, "tid", "", "terminal ID")
	c.Flags().StringVar(&mid, "mid", "", "merchant ID (optional with --tid)")
	c.Flags().StringVar(&stan, "stan", "", "terminal trace number (F11)")
	c.Flags().StringVar(&from, "from", "", fmt.Sprintf("with an RRN: the first local day YYYY-MM-DD to look at (default: %d days before --to)", journal.RRNLookback))
	c.Flags().StringVar(&to, "to", "", "with an RRN: the last local day YYYY-MM-DD to look at (default: today)")
	return c
}

// rrnDays are the local days an RRN is looked for on: --from to --to, by default today and the
// journal.RRNLookback days before it.
func rrnDays(from, to string) ([2]time.Time, error) {
	days := [2]time.Time{{}, time.Now()}
	for i, d := range []struct{ flag, v string }{{"--from", from}, {"--to", to}} {
		if d.v == "" {
			continue
		}
		t, err := time.ParseInLocation("2006-01-02", d.v, time.Local)
		if err != nil {
			return days, fmt.Errorf("%s: expected a day YYYY-MM-DD, found %q", d.flag, d.v)
		}
		days[i] = t
	}
	if from == "" {
		days[0] = days[1].AddDate(0, 0, -journal.RRNLookback)
	}
	if days[0].After(days[1]) {
		return days, fmt.Errorf("--from %s is after --to %s", days[0].Format("2006-01-02"), days[1].Format("2006-01-02"))
	}
	return days, nil
}

func txnCmd(cfgPath *string) *cobra.Command {
	var f query.Filter
	var from, to, sfrom, sto, minAmt, maxAmt, asCSV string
	parse := func() error {
		days := []struct {
			flag, v string
			to      *time.Time
		}{{"--from", from, &f.From}, {"--to", to, &f.To}, {"--settle-from", sfrom, &f.SettleFrom}, {"--settle-to", sto, &f.SettleTo}}
		for _, d := range days {
			if d.v == "" {
				continue
			}
			t, err := time.ParseInLocation("2006-01-02", d.v, time.Local)
			if err != nil {
				return fmt.Errorf("%s: expected a day YYYY-MM-DD, found %q", d.flag, d.v)
			}
			*d.to = t
		}
		for _, a := range []struct {
			flag, v string
			to      *int64
		}{{"--min", minAmt, &f.MinAmount}, {"--max", maxAmt, &f.MaxAmount}} {
			if a.v == "" {
				continue
			}
			v, err := money.Parse(a.v)
			if err != nil {
				return fmt.Errorf("%s: %w", a.flag, err)
			}
			*a.to = v
		}
		return nil
	}
	c := &cobra.Command{
		Use:   "txn",
		Short: "List and filter journaled transactions, newest first (table or CSV); `txn summary` and `txn tail`",
		Long: `List journaled transactions, newest first, and say how many of how many are shown.
The state column is one letter:
` + stateLegend() + `Filters combine; amounts are yuan (12.34). --csv streams every matching row (no --limit).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parse(); err != nil {
				return err
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				if asCSV != "" {
					out := cmd.OutOrStdout()
					if asCSV != "-" {
						fh, err := os.Create(asCSV)
						if err != nil {
							return err
						}
						defer fh.Close()
						out = fh
					}
					all := f
					all.Limit, all.Offset = 0, 0
					n, err := writeCSV(cmd.Context(), out, j, all)
					if err == nil && asCSV != "-" {
						fmt.Fprintf(cmd.ErrOrStderr(), "%d transactions written to %s\n", n, asCSV)
					}
					return err
				}
				p, err := query.List(cmd.Context(), j, f)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if err := writeTxns(w, p.Rows); err != nil {
					return err
				}
				order := "newest first"
				if f.Oldest {
					order = "oldest first"
				}
				fmt.Fprintf(w, "%d of %d shown (%s", len(p.Rows), p.Total, order)
				if p.More() {
					next := p.Offset + len(p.Rows)
					fmt.Fprintf(w, "; --offset %d for the next %d, --limit N to show more at once", next, min(int64(p.Limit), p.Total-int64(next)))
				}
				fmt.Fprintln(w, ")")
				if len(p.Rows) > 0 {
					fmt.Fprintln(w, "state: P pending, A approved, D declined, V voided, R reversed, T timed out (see txn --help)")
				}
				return nil
			})
		},
	}
	fl := c.PersistentFlags()
	fl.StringVar(&from, "from", "", "first trade day YYYY-MM-DD")
	fl.StringVar(&to, "to", "", "last trade day YYYY-MM-DD")
	fl.StringVar(&sfrom, "settle-from", "", "first settlement date YYYY-MM-DD")
	fl.StringVar(&sto, "settle-to", "", "last settlement date YYYY-MM-DD")
	fl.StringVar(&f.MID, "mid", "", "merchant ID")
	fl.StringVar(&f.TID, "tid", "", "terminal ID")
	fl.StringVar(&f.Code, "code", "", "response code (00, 55, ...)")
	fl.StringVar(&f.CardOrg, "org", "", "card organisation (CUP)")
	fl.StringVar(&f.Kind, "kind", "", "purchase, void, refund, reversal or balance")
	fl.StringVar(&f.State, "state", "", "state letters, e.g. A or VR (see above)")
	fl.StringVar(&f.RRN, "rrn", "", "retrieval reference number")
	fl.StringVar(&f.AuthCode, "auth", "", "authorisation code")
	fl.StringVar(&f.Last4, "last4", "", "card's last 4 digits")
	fl.StringVar(&f.PAN, "pan", "", "full card number (matched through the journal's keyed hash; never stored)")
	fl.StringVar(&minAmt, "min", "", "smallest amount, yuan")
	fl.StringVar(&maxAmt, "max", "", "largest amount, yuan")
	c.Flags().IntVar(&f.Limit, "limit", 50, "at most this many rows")
	c.Flags().IntVar(&f.Offset, "offset", 0, "skip this many rows (paging)")
	c.Flags().BoolVar(&f.Oldest, "oldest", false, "oldest first")
	c.Flags().StringVar(&asCSV, "csv", "", "write every matching row as CSV to this file (- for stdout)")

	var by string
	sum := &cobra.Command{
		Use:   "summary",
		Short: "Totals by trade day, settlement date, merchant, terminal or card organisation",
		Long:  "Totals of the transactions the filters select. Columns:\n" + columnLegend(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parse(); err != nil {
				return err
			}
			g, err := query.ParseBy(by)
			if err != nil {
				return fmt.Errorf("--by: %w", err)
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				reg, err := registrydb.New(j.Pool, j.Vault).Load(cmd.Context())
				if err != nil {
					return err
				}
				names := func(mid string) string {
					if m := reg.Merchant(mid); m != nil {
						return m.Name
					}
					return ""
				}
				s, err := query.Summarize(cmd.Context(), j, f, g, names)
				if err != nil {
					return err
				}
				return writeSummary(cmd.OutOrStdout(), s)
			})
		},
	}
	sum.Flags().StringVar(&by, "by", "day", "day, settle, merchant, terminal or org")
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Follow the newest transactions as they are journaled",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parse(); err != nil {
				return err
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				last, err := query.Newest(cmd.Context(), j)
				if err != nil {
					return err
				}
				f.AfterID, f.Oldest, f.Limit = last, true, 500
				for {
					p, err := query.List(cmd.Context(), j, f)
					if err != nil {
						return err
					}
					if len(p.Rows) > 0 {
						f.AfterID = p.Rows[len(p.Rows)-1].ID
						if err := writeTxnsNoHeader(cmd.OutOrStdout(), p.Rows); err != nil {
							return err
						}
					}
					select {
					case <-cmd.Context().Done():
						return nil
					case <-time.After(500 * time.Millisecond):
					}
				}
			})
		},
	}
	c.AddCommand(sum, tail)
	return c
}

func stateLegend() string {
	var b strings.Builder
	for _, s := range query.States {
		fmt.Fprintf(&b, "  %c  %s\n", s.Letter, s.Meaning)
	}
	return b.String()
}

func columnLegend() string {
	var b strings.Builder
	for _, c := range query.Columns {
		fmt.Fprintf(&b, "  %-13s %s\n", c.Head, c.Meaning)
	}
	return b.String()
}

func txnRow(t *journal.Txn) []string {
	return []string{t.CreatedAt.Local().Format("2006-01-02 15:04:05"), t.LocalDay.Format("0102"), t.Kind, t.MID, t.TID, t.Batch, t.STAN, t.RRN, t.PANMasked, money.Format(t.Amount),
		t.RespCode, string(t.State), t.Rule, t.CardOrg}
}

var txnHeader = []string{"time", "day", "kind", "mid", "tid", "batch", "stan", "rrn", "pan", "amount", "code", "state", "rule", "org"}

func writeTxns(w io.Writer, ts []*journal.Txn) error {
	tb := &table{right: map[int]bool{9: true}}
	tb.row(txnHeader...)
	for _, t := range ts {
		tb.row(txnRow(t)...)
	}
	return tb.write(w)
}

func writeTxnsNoHeader(w io.Writer, ts []*journal.Txn) error {
	for _, t := range ts {
		if _, err := fmt.Fprintln(w, strings.Join(txnRow(t), "  ")); err != nil {
			return err
		}
	}
	return nil
}

// writeCSV streams every row f selects (flat memory) and returns how many it wrote.
func writeCSV(ctx context.Context, w io.Writer, j *journal.Journal, f query.Filter) (int, error) {
	cw := csv.NewWriter(w)
	_ = cw.Write(append(txnHeader, "reason"))
	n := 0
	err := query.Each(ctx, j, f, func(t *journal.Txn) error {
		n++
		return cw.Write(append(txnRow(t), t.Reason))
	})
	cw.Flush()
	if err != nil {
		return n, err
	}
	return n, cw.Error()
}

func writeSummary(w io.Writer, s *query.Summaries) error {
	head := []string{string(s.By)}
	if s.By == query.ByMerchant {
		head = append(head, "name")
	}
	tb := &table{right: map[int]bool{}}
	for i := len(head); i < len(head)+len(query.Columns); i++ {
		tb.right[i] = true
	}
	for _, c := range query.Columns {
		head = append(head, c.Head)
	}
	tb.row(head...)
	for _, r := range append(s.Rows, s.Total) {
		cells := []string{r.Key}
		if s.By == query.ByMerchant {
			cells = append(cells, r.Name)
		}
		tb.row(append(cells, r.Cells()...)...)
	}
	if err := tb.write(w); err != nil {
		return err
	}
	fmt.Fprintln(w, "\ncolumns (amounts in yuan):")
	_, err := io.WriteString(w, columnLegend())
	return err
}

func orAny(tid string) string {
	if tid == "" {
		return "TID"
	}
	return tid
}
