package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/hsm"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/spf13/cobra"
)

func keysCmd(cfgPath *string) *cobra.Command {
	c := &cobra.Command{Use: "keys", Short: "Key ceremonies: enter terminal master keys and the zone PIN key into the security module"}
	for _, usage := range []string{"TMK", "ZPK"} {
		var tid, expect string
		var n int
		var print bool
		use, short := "import-tmk --tid TID", "Enter a terminal's master key from 2 or 3 components; its block replaces the terminal's tmk in the config"
		if usage == "ZPK" {
			use, short = "import-zpk", "Enter the zone PIN key shared with the issuer from 2 or 3 components; its block replaces issuer.zone_key (a live rotation)"
		}
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Long: short + `.
Each custodian types a component (16, 32 or 48 hex digits) unseen and sees its check value; the
components are combined by XOR, the combined key's check value must match the key form's
(--kcv, or typed at the end), and only then is the key wrapped under the security module's KEK
and written to the config as a KB1 block. A running switch applies the change live. No clear
component is written anywhere.`,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if usage == "TMK" && tid == "" {
					return fmt.Errorf("--tid: expected the terminal ID whose master key is entered")
				}
				return runCeremony(cmd.InOrStdin(), cmd.OutOrStdout(), *cfgPath, usage, tid, n, expect, print)
			},
		}
		cmd.Flags().StringVar(&tid, "tid", "", "terminal ID")
		cmd.Flags().IntVar(&n, "components", 2, "number of components: 2 or 3")
		cmd.Flags().StringVar(&expect, "kcv", "", "the combined key's check value from the key form (default: asked at the end)")
		cmd.Flags().BoolVar(&print, "print", false, "print the block instead of writing it into the config")
		if usage == "ZPK" {
			cmd.Flags().MarkHidden("tid")
		}
		c.AddCommand(cmd)
	}
	return c
}

func runCeremony(in io.Reader, out io.Writer, cfgPath, usage, tid string, n int, expect string, print bool) error {
	if err := app.NoCoreDumps(); err != nil { // the components pass through this process
		return err
	}
	path, err := configPath(cfgPath)
	if err != nil {
		return err
	}
	c, reg, err := app.Load(path)
	if err != nil {
		return err
	}
	what := "the issuer zone"
	if usage == "TMK" {
		found := false
		for _, t := range reg.Terminals() {
			found = found || t.TID == tid
		}
		if !found {
			return fmt.Errorf("--tid %s: not a terminal of %s", tid, path)
		}
		what = "terminal " + tid
	}
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return err
	}
	key, err := journal.LoadOrCreateKey(filepath.Join(c.DataDir, "journal.key"))
	if err != nil {
		return err
	}
	vault, err := journal.NewVault(key)
	if err != nil {
		return err
	}
	sec, err := app.OpenSecurity(c, vault, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("security module: %w", err)
	}
	defer sec.Close()
	b, err := hsm.Ceremony{Usage: usage, For: what, Components: n, Expect: expect, In: in, Out: out}.Run(sec)
	if err != nil {
		return err
	}
	if print {
		fmt.Fprintln(out, b.String())
		return nil
	}
	if err := app.SetKey(path, tid, b.String()); err != nil {
		return fmt.Errorf("the key was not written (%v); its block is %s", err, b.String())
	}
	fmt.Fprintf(out, "Written to %s (a running switch applies it live).\n", path)
	return nil
}
