package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/shoudan/shoudan/switch/fixture"
	"github.com/spf13/cobra"
)

func replayCmd(cfgPath *string) *cobra.Command {
	var addr string
	c := &cobra.Command{
		Use:   "replay DIR",
		Short: "Send captured fixtures to a running switch, compare the responses, print pass/fail (exit 1 on any difference)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, reg, err := loadConfig(*cfgPath)
			if err != nil {
				return err
			}
			if addr == "" {
				for _, l := range c.Listeners {
					if l.Env == "test" {
						addr = l.Addr
					}
				}
			}
			fxs, err := fixture.Load(args[0])
			if err != nil {
				return err
			}
			out := fixture.Replay(addr, reg, fxs)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "result\tcode\tfixture\tdifference")
			failed := 0
			for _, o := range out {
				res, why := "PASS", ""
				if !o.Passed() {
					res, failed = "FAIL", failed+1
					why = strings.Join(o.Diffs, "; ")
					if o.Err != nil {
						why = o.Err.Error()
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res, o.Code, o.Fixture.Name, why)
			}
			tw.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "%d fixtures, %d passed, %d failed\n", len(out), len(out)-failed, failed)
			if failed > 0 {
				return fmt.Errorf("%d fixtures differ", failed)
			}
			return nil
		},
	}
	c.Flags().StringVar(&addr, "addr", "", "switch listener (default: the config's test listener)")
	return c
}
