package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	posswitch "github.com/shoudan/shoudan/switch"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/spf13/cobra"
)

// withJournal opens the journal of the config (adopting the private PostgreSQL of a running
// switch, or starting it for the duration of the command).
func withJournal(ctx context.Context, cfgPath string, f func(*journal.Journal) error) error {
	c, _, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	j, pg, err := app.OpenJournal(ctx, c, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer func() {
		j.Close()
		if pg != nil && !pg.Adopted() {
			_ = pg.Stop()
		}
	}()
	return f(j)
}

func explainCmd(cfgPath *string) *cobra.Command {
	var tid, stan, mid string
	c := &cobra.Command{
		Use:   "explain [RRN]",
		Short: "Explain a journaled transaction: what it was, the checks it passed and the rule that gave its code",
		Long:  "Find a transaction by RRN, or by --tid and --stan (newest first), and explain its decision in words.",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				var ts []*journal.Txn
				switch {
				case len(args) == 1:
					t, err := j.ByRRN(cmd.Context(), args[0])
					if err != nil {
						return err
					}
					if t != nil {
						ts = append(ts, t)
					}
				case tid != "" && stan != "":
					var err error
					if ts, err = j.List(cmd.Context(), journal.Filter{TID: tid, MID: mid, STAN: stan, NewestFst: true, Limit: 5}); err != nil {
						return err
					}
				default:
					return fmt.Errorf("explain: give an RRN, or --tid and --stan")
				}
				if len(ts) == 0 {
					return fmt.Errorf("no such transaction in the journal")
				}
				for _, t := range ts {
					explain(cmd.OutOrStdout(), t)
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&tid, "tid", "", "terminal ID")
	c.Flags().StringVar(&mid, "mid", "", "merchant ID (optional with --tid)")
	c.Flags().StringVar(&stan, "stan", "", "terminal trace number (F11)")
	return c
}

func explain(w io.Writer, t *journal.Txn) { posswitch.Explain(t).Write(w) }

func money(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

func txnCmd(cfgPath *string) *cobra.Command {
	var f journal.Filter
	var from, to, asCSV string
	var limit int
	parse := func() error {
		var err error
		if from != "" {
			if f.From, err = time.ParseInLocation("2006-01-02", from, time.Local); err != nil {
				return fmt.Errorf("--from: expected YYYY-MM-DD, found %q", from)
			}
		}
		if to != "" {
			if f.To, err = time.ParseInLocation("2006-01-02", to, time.Local); err != nil {
				return fmt.Errorf("--to: expected YYYY-MM-DD, found %q", to)
			}
		}
		f.Limit = limit
		return nil
	}
	c := &cobra.Command{
		Use:   "txn",
		Short: "List and filter journaled transactions (table or CSV); `txn summary` and `txn tail`",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parse(); err != nil {
				return err
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				ts, err := j.List(cmd.Context(), f)
				if err != nil {
					return err
				}
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
					return writeCSV(out, ts)
				}
				return writeTxns(cmd.OutOrStdout(), ts)
			})
		},
	}
	fl := c.PersistentFlags()
	fl.StringVar(&from, "from", "", "first local day YYYY-MM-DD")
	fl.StringVar(&to, "to", "", "last local day YYYY-MM-DD")
	fl.StringVar(&f.MID, "mid", "", "merchant ID")
	fl.StringVar(&f.TID, "tid", "", "terminal ID")
	fl.StringVar(&f.RespCode, "code", "", "response code")
	fl.StringVar(&f.CardOrg, "org", "", "card organisation (CUP)")
	c.Flags().IntVar(&limit, "limit", 1000, "at most this many rows")
	c.Flags().StringVar(&asCSV, "csv", "", "write CSV to this file (- for stdout)")

	var by string
	sum := &cobra.Command{
		Use:   "summary",
		Short: "Totals by day, settlement date, merchant or card organisation",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parse(); err != nil {
				return err
			}
			col := map[string]string{"day": "local_day::text", "settle": "settle_date::text", "merchant": "mid", "org": "card_org"}[by]
			if col == "" {
				return fmt.Errorf("--by: expected day, settle, merchant or org, found %q", by)
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				return summary(cmd.Context(), cmd.OutOrStdout(), j, col, by, f)
			})
		},
	}
	sum.Flags().StringVar(&by, "by", "day", "day, settle, merchant or org")
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Follow the newest transactions as they are journaled",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := parse(); err != nil {
				return err
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				last, err := j.List(cmd.Context(), journal.Filter{NewestFst: true, Limit: 1})
				if err != nil {
					return err
				}
				if len(last) > 0 {
					f.AfterID = last[0].ID
				}
				f.Limit = 500
				for {
					ts, err := j.List(cmd.Context(), f)
					if err != nil {
						return err
					}
					if len(ts) > 0 {
						f.AfterID = ts[len(ts)-1].ID
						if err := writeTxnsNoHeader(cmd.OutOrStdout(), ts); err != nil {
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

func txnRow(t *journal.Txn) []string {
	return []string{t.CreatedAt.Local().Format("2006-01-02 15:04:05"), t.Kind, t.MID, t.TID, t.Batch, t.STAN, t.RRN, t.PANMasked, money(t.Amount),
		t.RespCode, string(t.State), t.Rule, t.CardOrg}
}

var txnHeader = []string{"time", "kind", "mid", "tid", "batch", "stan", "rrn", "pan", "amount", "code", "state", "rule", "org"}

func writeTxns(w io.Writer, ts []*journal.Txn) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(txnHeader, "\t"))
	for _, t := range ts {
		fmt.Fprintln(tw, strings.Join(txnRow(t), "\t"))
	}
	return tw.Flush()
}

func writeTxnsNoHeader(w io.Writer, ts []*journal.Txn) error {
	for _, t := range ts {
		if _, err := fmt.Fprintln(w, strings.Join(txnRow(t), "  ")); err != nil {
			return err
		}
	}
	return nil
}

func writeCSV(w io.Writer, ts []*journal.Txn) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(append(txnHeader, "reason"))
	for _, t := range ts {
		_ = cw.Write(append(txnRow(t), t.Reason))
	}
	cw.Flush()
	return cw.Error()
}

func summary(ctx context.Context, w io.Writer, j *journal.Journal, col, by string, f journal.Filter) error {
	q := `SELECT ` + col + ` AS k, count(*),
		count(*) FILTER (WHERE resp_code='00'),
		coalesce(sum(amount) FILTER (WHERE kind='purchase' AND state='A'),0),
		count(*) FILTER (WHERE kind='purchase' AND state='A'),
		coalesce(sum(amount) FILTER (WHERE kind IN ('refund','void') AND state='A'),0),
		count(*) FILTER (WHERE resp_code NOT IN ('00',''))
		FROM txn WHERE kind IN ('purchase','void','refund','balance','reversal')`
	var args []any
	if !f.From.IsZero() {
		args = append(args, f.From)
		q += fmt.Sprintf(" AND local_day >= $%d", len(args))
	}
	if !f.To.IsZero() {
		args = append(args, f.To)
		q += fmt.Sprintf(" AND local_day <= $%d", len(args))
	}
	for c, v := range map[string]string{"mid": f.MID, "tid": f.TID} {
		if v != "" {
			args = append(args, v)
			q += fmt.Sprintf(" AND %s = $%d", c, len(args))
		}
	}
	q += " GROUP BY 1 ORDER BY 1"
	rows, err := j.Pool.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\ttransactions\tapproved\tpurchases\tpurchase amount\tvoids+refunds\tdeclined\t\n", by)
	for rows.Next() {
		var k string
		var n, ok, pc, dec int64
		var pa, cr int64
		if err := rows.Scan(&k, &n, &ok, &pa, &pc, &cr, &dec); err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%d\t\n", k, n, ok, pc, money(pa), money(cr), dec)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return tw.Flush()
}
