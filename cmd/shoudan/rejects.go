package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoudan/shoudan/spec/money"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/spf13/cobra"
)

// rejectsCmd lists the requests declined before authentication (protocol §7 rows 1-4): answered,
// but they changed nothing, so they are not in the journal (txn, explain) but in rejects.
func rejectsCmd(cfgPath *string) *cobra.Command {
	var f journal.RejectFilter
	var since time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "rejects",
		Short: "Frames answered 30/97/77/A0 before authentication: they changed nothing; who sent them and why they failed",
		Long: `List the rejects, newest first: requests that failed a check up to and including the MAC
(protocol §7 rows 1-4: 30 format, 97 unknown terminal, 77 no sign-on or wrong batch, A0 MAC),
undecodable frames, and unauthenticated management messages the switch did not act on. None of
them took a duplicate key, became a terminal's last transaction or touched a batch. TID, MID, STAN
and amount are what the frame claimed; the source is the address it came from. Bounded: the
switch keeps a month, at most 100,000 rows.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since > 0 {
				f.Since = time.Now().Add(-since)
			}
			return withJournal(cmd.Context(), *cfgPath, func(j *journal.Journal) error {
				rs, err := j.Rejects(cmd.Context(), f)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if asJSON {
					enc := json.NewEncoder(out)
					for _, r := range rs {
						r.FrameHash = nil
						if err := enc.Encode(r); err != nil {
							return err
						}
					}
					return nil
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, strings.Join([]string{"time", "source", "env", "code", "rule", "kind", "mti", "mid", "tid", "batch", "stan", "pan", "amount", "reason"}, "\t"))
				for _, r := range rs {
					fmt.Fprintln(tw, strings.Join([]string{r.At.Local().Format("2006-01-02 15:04:05"), r.Source, r.Env, r.Code, r.Rule, dash(r.Kind), dash(r.MTI),
						dash(r.MID), dash(r.TID), dash(r.Batch), dash(r.STAN), dash(r.PANMasked), money.Format(r.Amount), r.Reason}, "\t"))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().StringVar(&f.TID, "tid", "", "terminal ID (as claimed by the frame)")
	c.Flags().StringVar(&f.MID, "mid", "", "merchant ID (as claimed by the frame)")
	c.Flags().StringVar(&f.Source, "source", "", "source address or its prefix (e.g. 10.1.2.)")
	c.Flags().DurationVar(&since, "since", 0, "only the last DURATION (e.g. 1h)")
	c.Flags().IntVar(&f.Limit, "limit", 50, "at most this many (0 = all)")
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
