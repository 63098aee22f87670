package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/settlement"
	"github.com/shoudan/shoudan/terminals"
	"github.com/spf13/cobra"
)

// withSettler opens the journal of the config and runs f with a Settler over it.
func withSettler(ctx context.Context, cfgPath string, f func(*app.Config, *settlement.Settler) error) error {
	return withTool(ctx, cfgPath, app.OpenJournal, func(c *app.Config, reg *terminals.Registry, j *journal.Journal) error {
		s := &settlement.Settler{DB: j.Pool, Config: c.Settlement, Registry: func() *terminals.Registry { return reg }, Now: time.Now,
			Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
		return f(c, s)
	})
}

// settleDate reads --date (YYYY-MM-DD); empty = the newest settlement date whose cut-off has passed.
func settleDate(c *app.Config, s string) (time.Time, error) {
	if s == "" {
		d := c.Settlement.Cutoff.Date(time.Now()).AddDate(0, 0, -1)
		return time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC), nil
	}
	d, err := time.Parse("2006-01-02", s)
	if err != nil {
		return d, fmt.Errorf("--date: expected YYYY-MM-DD, found %q", s)
	}
	return d, nil
}

func yuan(fen int64) string {
	if fen < 0 {
		return "-" + terminals.FormatAmount(-fen)
	}
	return terminals.FormatAmount(fen)
}

func settleCmd(cfgPath *string) *cobra.Command {
	root := &cobra.Command{Use: "settle", Short: "Settlement: close a settlement date, reconcile with the issuer, balances, frozen funds, pay-outs"}
	var date, mid, group, file, control, reason, operator, amount string
	var hold int64
	run := &cobra.Command{
		Use:   "run",
		Short: "Close a settlement date (and any earlier open one): settle every merchant, clear refunds, instruct pay-outs",
		Long: `Close settlement date --date (default: the newest date whose cut-off has passed). Earlier dates not
yet closed are closed first, oldest first. Idempotent: a closed date is reported, not redone; a run
that was interrupted resumes where it stopped (each merchant's settlement commits with every
balance movement it causes, or not at all), so nothing is paid twice.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSettler(cmd.Context(), *cfgPath, func(c *app.Config, s *settlement.Settler) error {
				d, err := settleDate(c, date)
				if err != nil {
					return err
				}
				started := time.Now()
				rs, err := s.Close(cmd.Context(), d)
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				if len(rs) > 0 {
					fmt.Fprintln(w, "DATE\tSTATE\tTXNS\tMERCHANTS\tTAKINGS\tFEES\tREFUNDS CLEARED\tPAID")
				}
				for _, r := range rs {
					state := "closed"
					if r.Already {
						state = "closed before"
					} else if r.Resumed > 0 {
						state = fmt.Sprintf("closed (resumed: %d merchants were done)", r.Resumed)
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", r.Date.Format("2006-01-02"), state, r.Txns, r.Merchants, yuan(r.Takings), yuan(r.Fees), yuan(r.Refunds), yuan(r.Paid))
				}
				w.Flush()
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "done in %s\n", time.Since(started).Round(time.Millisecond))
				}
				return err
			})
		},
	}
	run.Flags().StringVar(&date, "date", "", "settlement date YYYY-MM-DD")

	show := &cobra.Command{
		Use:   "show",
		Short: "Show the settlements of a date (per merchant, or one merchant or group)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSettler(cmd.Context(), *cfgPath, func(c *app.Config, s *settlement.Settler) error {
				d, err := settleDate(c, date)
				if err != nil {
					return err
				}
				sts, err := s.Settlements(cmd.Context(), d, d, mid, group)
				if err != nil {
					return err
				}
				if len(sts) == 0 {
					return fmt.Errorf("no settlement on %s (is the date closed? `shoudan settle run --date %s`)", d.Format("2006-01-02"), d.Format("2006-01-02"))
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "MID\tGROUP\tRATE\tCYCLE\tPAYOUT\tPURCHASES\tVOIDS\tREVERSALS\tTAKINGS\tFEE\tCREDIT\tREFUNDS\tCLEARED\tPENDING\tPAID\tBALANCE\tFROZEN")
				for _, m := range sts {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d/%s\t%d/%s\t%d/%s\t%s\t%s\t%s\t%d/%s\t%s\t%s\t%s\t%s\t%s\n", m.MID, m.Group, m.Rate, m.Cycle,
						m.PayoutDate.Format("2006-01-02"), m.Purchases, yuan(m.PurchaseAmt), m.Voids, yuan(m.VoidAmt), m.Reversals, yuan(m.ReversalAmt),
						yuan(m.Takings), yuan(m.Fee), yuan(m.Credit), m.Refunds, yuan(m.RefundAmt), yuan(m.RefundsCleared), yuan(m.RefundsPending),
						yuan(m.Paid), yuan(m.BalanceAfter), yuan(m.FrozenAfter))
				}
				return w.Flush()
			})
		},
	}
	show.Flags().StringVar(&date, "date", "", "settlement date YYYY-MM-DD (default: the newest closed)")
	show.Flags().StringVar(&mid, "mid", "", "one merchant")
	show.Flags().StringVar(&group, "group", "", "one merchant group (集团号)")

	reconcile := &cobra.Command{
		Use:   "reconcile",
		Short: "Match a settlement date's journal against the issuer's clearing file and list every difference",
		Long: `Read the issuer's clearing file of --date (--file, default <data_dir>/clearing/SIM-YYYYMMDD.txt; or
fetched from a running simulated issuer with --issuer-control HOST:PORT), match it against the
journal's approvals of that settlement date by RRN, and list every difference: issuer_only (the
issuer approved it, the journal has no standing approval), journal_only, amount_differs, each with
RRN, STAN and upstream trace. Exit status 1 when there are differences.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSettler(cmd.Context(), *cfgPath, func(c *app.Config, s *settlement.Settler) error {
				d, err := settleDate(c, date)
				if err != nil {
					return err
				}
				var rd io.Reader
				switch {
				case control != "":
					co := c.Settlement.Cutoff
					url := fmt.Sprintf("http://%s/clearing?date=%s&cutoff=%02d:%02d&tz=%s", control, d.Format("20060102"), co.Minutes/60, co.Minutes%60, co.Loc)
					resp, err := http.Get(url)
					if err != nil {
						return fmt.Errorf("--issuer-control: %w", err)
					}
					defer resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("--issuer-control: %s answered %s", url, resp.Status)
					}
					rd = resp.Body
				default:
					if file == "" {
						_, dir := c.SettlementDirs()
						file = app.ClearingPath(dir, d)
					}
					f, err := os.Open(file)
					if err != nil {
						return fmt.Errorf("clearing file: %w", err)
					}
					defer f.Close()
					rd = f
				}
				cf, err := settlement.ParseClearing(rd)
				if err != nil {
					return err
				}
				r, err := s.Reconcile(cmd.Context(), d, cf)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "%s: journal %d, issuer %d, matched %d, differences %d\n", d.Format("2006-01-02"), r.Journal, r.Issuer, r.Matched, len(r.Differences))
				if len(r.Differences) == 0 {
					return nil
				}
				w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "DIFFERENCE\tRRN\tSTAN\tTRACE\tMID\tTID\tKIND\tJOURNAL\tISSUER\tNOTE")
				amt := func(p *int64) string {
					if p == nil {
						return "-"
					}
					return yuan(*p)
				}
				for _, df := range r.Differences {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", df.Kind, df.RRN, df.STAN, df.UpTrace, df.MID, df.TID, df.TxnKind, amt(df.JournalAmount), amt(df.IssuerAmount), df.Note)
				}
				w.Flush()
				return fmt.Errorf("%d differences to resolve", len(r.Differences))
			})
		},
	}
	reconcile.Flags().StringVar(&date, "date", "", "settlement date YYYY-MM-DD")
	reconcile.Flags().StringVar(&file, "file", "", "the issuer's clearing file")
	reconcile.Flags().StringVar(&control, "issuer-control", "", "fetch the clearing file from a running simulated issuer's control address")

	balance := &cobra.Command{
		Use:   "balance",
		Short: "A merchant's balance: settled and unpaid, frozen, available, refunds pending clearing, holds",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSettler(cmd.Context(), *cfgPath, func(c *app.Config, s *settlement.Settler) error {
				if mid == "" {
					return fmt.Errorf("--mid is required")
				}
				b, err := s.BalanceOf(cmd.Context(), mid)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "merchant %s\nbalance    %s\nfrozen     %s\navailable  %s\n", mid, yuan(b.Balance), yuan(b.Frozen), yuan(b.Available))
				for _, h := range b.Holds {
					fmt.Fprintf(out, "hold %d: %s frozen on %s by %s: %s\n", h.ID, yuan(h.Amount), h.At.Local().Format("2006-01-02 15:04"), h.By, h.Reason)
				}
				for _, p := range b.PendingRefunds {
					fmt.Fprintf(out, "refund pending clearing: RRN %s %s (settlement date %s)\n", p.RRN, yuan(p.Amount), p.SettleDate.Format("2006-01-02"))
				}
				return nil
			})
		},
	}
	balance.Flags().StringVar(&mid, "mid", "", "merchant ID")

	freeze := &cobra.Command{
		Use:   "freeze",
		Short: "Freeze funds of a merchant (risk hold): --mid --amount --reason --operator",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSettler(cmd.Context(), *cfgPath, func(c *app.Config, s *settlement.Settler) error {
				fen, err := terminals.ParseAmount(amount)
				if err != nil {
					return fmt.Errorf("--amount: %w", err)
				}
				h, err := s.Freeze(cmd.Context(), mid, fen, reason, operator)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "hold %d: %s of %s frozen\n", h.ID, yuan(h.Amount), mid)
				return nil
			})
		},
	}
	freeze.Flags().StringVar(&mid, "mid", "", "merchant ID")
	freeze.Flags().StringVar(&amount, "amount", "", "amount in CNY, e.g. 500.00")
	freeze.Flags().StringVar(&reason, "reason", "", "why (risk case)")
	freeze.Flags().StringVar(&operator, "operator", "", "acquirer operator")

	release := &cobra.Command{
		Use:   "release",
		Short: "Release a hold (acquirer operator): --hold ID --operator --reason",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSettler(cmd.Context(), *cfgPath, func(c *app.Config, s *settlement.Settler) error {
				h, err := s.Release(cmd.Context(), hold, reason, operator)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "hold %d released: %s of %s\n", h.ID, yuan(h.Amount), h.MID)
				return nil
			})
		},
	}
	release.Flags().Int64Var(&hold, "hold", 0, "hold ID (shoudan settle balance lists them)")
	release.Flags().StringVar(&reason, "reason", "", "why")
	release.Flags().StringVar(&operator, "operator", "", "acquirer operator")

	payouts := &cobra.Command{
		Use:   "payouts",
		Short: "Pay-out instructions with value date --date (default: the next calendar day)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSettler(cmd.Context(), *cfgPath, func(c *app.Config, s *settlement.Settler) error {
				d, err := settleDate(c, date)
				if err != nil {
					return err
				}
				if date == "" {
					d = d.AddDate(0, 0, 1)
				}
				ps, err := s.Payouts(cmd.Context(), mid, d, d)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "VALUE DATE\tMID\tSETTLEMENT OF\tAMOUNT\tMADE BY")
				var sum int64
				for _, p := range ps {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.ValueDate.Format("2006-01-02"), p.MID, p.CreditDate.Format("2006-01-02"), yuan(p.Amount), p.MadeBy)
					sum += p.Amount
				}
				fmt.Fprintf(w, "total\t\t\t%s\t%d pay-outs\n", yuan(sum), len(ps))
				return w.Flush()
			})
		},
	}
	payouts.Flags().StringVar(&date, "date", "", "value date YYYY-MM-DD")
	payouts.Flags().StringVar(&mid, "mid", "", "one merchant")

	root.AddCommand(run, show, reconcile, balance, freeze, release, payouts)
	return root
}

func statementsCmd(cfgPath *string) *cobra.Command {
	var date, mid, group, month, dir string
	var all bool
	c := &cobra.Command{
		Use:   "statements",
		Short: "Write statements (.xlsx and CSV; CSV alone above 20,000 lines): daily per merchant or group, monthly",
		Long: `Write the daily statement of --mid (or of merchant group --group) for closed settlement date --date,
or with --all every statement of that date (each merchant, each group, and on a month's last day the
monthly statements), or with --month YYYY-MM the monthly statement of --mid (merchants with
monthly statements enabled, from that month on). Files go to --dir (default <data_dir>/statements).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withSettler(cmd.Context(), *cfgPath, func(c *app.Config, s *settlement.Settler) error {
				if dir == "" {
					dir, _ = c.SettlementDirs()
				}
				var paths []string
				switch {
				case month != "":
					m, err := time.Parse("2006-01", month)
					if err != nil {
						return fmt.Errorf("--month: expected YYYY-MM, found %q", month)
					}
					st, err := s.MonthlyStatement(cmd.Context(), m, mid)
					if err != nil {
						return err
					}
					if paths, err = st.Write(dir, settlement.MonthlyName(m, mid)); err != nil {
						return err
					}
				default:
					d, err := settleDate(c, date)
					if err != nil {
						return err
					}
					if all {
						if paths, err = s.WriteDay(cmd.Context(), d, dir); err != nil {
							return err
						}
						break
					}
					if mid == "" && group == "" {
						return fmt.Errorf("give --mid, --group or --all")
					}
					st, err := s.DailyStatement(cmd.Context(), d, mid, group)
					if err != nil {
						return err
					}
					if paths, err = st.Write(dir, settlement.StatementName(d, mid, group)); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %d transactions, takings %s, fee %s, credit %s, refunds cleared %s, paid %s\n",
						st.Title, d.Format("2006-01-02"), len(st.Lines), yuan(st.Total.Takings), yuan(st.Total.Fee), yuan(st.Total.Credit), yuan(st.Total.RefundsCleared), yuan(st.Total.Paid))
				}
				for _, p := range paths {
					abs, _ := filepath.Abs(p)
					fmt.Fprintln(cmd.OutOrStdout(), abs)
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&date, "date", "", "settlement date YYYY-MM-DD (default: the newest closed)")
	c.Flags().StringVar(&mid, "mid", "", "merchant ID")
	c.Flags().StringVar(&group, "group", "", "merchant group (集团号)")
	c.Flags().StringVar(&month, "month", "", "monthly statement of --mid for YYYY-MM")
	c.Flags().StringVar(&dir, "dir", "", "output directory")
	c.Flags().BoolVar(&all, "all", false, "every statement of the date")
	return c
}
