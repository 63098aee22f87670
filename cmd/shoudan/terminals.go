package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/terminals"
	"github.com/shoudan/shoudan/terminals/registrydb"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

func terminalsCmd(cfgPath *string) *cobra.Command {
	c := &cobra.Command{Use: "terminals", Short: "The merchant and terminal registry (in the journal database): import, export, list, show, history",
		Long: `The registry lives in the journal database: every switch node decides by it and rebuilds its
snapshot when a change commits. The config file's registry sections seed it on a first start and
are imported when the file changes (only what the file changed); the console and these commands
change it directly. Export writes it back as YAML, master keys sealed (tmk_sealed).`}
	c.AddCommand(&cobra.Command{
		Use:   "import FILE",
		Short: "Upsert merchants, terminals, whitelist dates and rules from a YAML or CSV file into the registry",
		Long: `Upsert into the registry database; every switch node applies it at once. YAML: the config's own
sections (merchants:, terminals:, qps_whitelist:, rules:, load_terminals:; a full config file works).
CSV: a header row with "kind" (merchant or terminal) and the YAML keys as columns, e.g.
  kind,mid,name,name_en,mcc,qps,tid,env,serial,tmk
Nothing is written unless the whole resulting registry is valid; errors name the file's line.
Nothing is removed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := readImport(args[0])
			if err != nil {
				return err
			}
			return withRegistry(cmd.Context(), *cfgPath, func(s *registrydb.Store) error {
				ch, err := s.Import(cmd.Context(), "shoudan terminals import "+args[0]+" by "+osUser(), in)
				if err != nil {
					return fmt.Errorf("%s: import refused, nothing written: %w", args[0], err)
				}
				w := cmd.OutOrStdout()
				if ch.Empty() {
					fmt.Fprintf(w, "%s: nothing to change (registry version %d)\n", args[0], ch.Version)
					return nil
				}
				for _, l := range ch.Lines() {
					fmt.Fprintln(w, l)
				}
				fmt.Fprintf(w, "%s: %d changes, registry version %d (every running switch applies it now)\n", args[0], len(ch.Differences), ch.Version)
				return nil
			})
		},
	})
	var into string
	export := &cobra.Command{
		Use:   "export [FILE]",
		Short: "Write the registry as YAML (stdout, FILE, or --into a config file's registry sections)",
		Long: `Write the registry database as the config file's registry sections. Master keys are written
sealed under the journal key (tmk_sealed): the file holds no key in clear and imports back into any
node of this deployment. --into CONFIG replaces the registry sections of that config file and keeps
everything else; a switch watching it then finds nothing to import.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRegistry(cmd.Context(), *cfgPath, func(s *registrydb.Store) error {
				spec, v, err := s.Export(cmd.Context())
				if err != nil {
					return err
				}
				var base []byte
				target := into
				if target != "" {
					if base, err = os.ReadFile(target); err != nil {
						return err
					}
				} else if len(args) == 1 {
					target = args[0]
				}
				out, err := spec.ReplaceSections(base)
				if err != nil {
					return err
				}
				if target == "" {
					_, err = cmd.OutOrStdout().Write(out)
					return err
				}
				if into != "" {
					if _, _, err := app.Parse(out); err != nil {
						return fmt.Errorf("--into %s: refused, nothing written: the config would be invalid: %w", into, err)
					}
				}
				tmp := target + ".tmp"
				if err := os.WriteFile(tmp, out, 0o600); err != nil {
					return err
				}
				if err := os.Rename(tmp, target); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: registry version %d written\n", target, v)
				return nil
			})
		},
	}
	export.Flags().StringVar(&into, "into", "", "replace the registry sections of this config file")
	c.AddCommand(export)
	var listMID string
	list := &cobra.Command{
		Use:   "list [--mid MID]",
		Short: "List merchants and terminals (the generated load terminals as one line)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withRegistry(cmd.Context(), *cfgPath, func(s *registrydb.Store) error {
				reg, err := s.Load(cmd.Context())
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "registry version %d\n\n", reg.Version)
				mt := &table{} // aligned by display width: Chinese names take two columns a character
				mt.row("MID", "name", "name_en", "MCC", "enabled", "direct", "双免", "双免 limit", "whitelisted", "refund", "acquirer")
				for _, m := range reg.Merchants() {
					if listMID != "" && m.MID != listMID {
						continue
					}
					wl := "-"
					if !m.QPSRegistered.IsZero() {
						wl = m.QPSRegistered.Format("2006-01-02")
					}
					mt.row(m.MID, m.Name, m.NameEN, m.MCC, fmt.Sprint(m.Enabled), fmt.Sprint(m.Direct), fmt.Sprint(m.QPS),
						terminals.FormatAmount(reg.QPSLimit(m)), wl, fmt.Sprint(m.RefundAllowed), m.Acquirer)
				}
				if err := mt.write(w); err != nil {
					return err
				}
				fmt.Fprintln(w)
				tt := &table{}
				tt.row("TID", "MID", "env", "serial", "enabled", "双免", "TMK")
				generated := 0
				for _, t := range reg.Terminals() {
					if t.Generated {
						generated++
						continue
					}
					if listMID != "" && t.MID != listMID {
						continue
					}
					tt.row(t.TID, t.MID, string(t.Env), t.Serial, fmt.Sprint(t.Enabled), fmt.Sprint(t.QPS), terminals.MaskKey(t))
				}
				if tpl, n := reg.LoadTemplate(); n > 0 && (listMID == "" || tpl.MID == listMID) {
					tt.row(terminals.LoadTID(0)+".."+terminals.LoadTID(n-1), tpl.MID, string(tpl.Env), "LOAD-…", "true", fmt.Sprint(tpl.QPS),
						terminals.MaskKey(tpl), fmt.Sprintf("(load_terminals: %d generated for pos load)", generated))
				}
				return tt.write(w)
			})
		},
	}
	list.Flags().StringVar(&listMID, "mid", "", "only this merchant and its terminals")
	c.AddCommand(list)
	c.AddCommand(&cobra.Command{
		Use:   "show TID",
		Short: "Show one terminal, its merchant and the rules that apply to it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRegistry(cmd.Context(), *cfgPath, func(s *registrydb.Store) error {
				reg, err := s.Load(cmd.Context())
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				found := false
				for _, t := range reg.Terminals() {
					if t.TID != args[0] {
						continue
					}
					found = true
					m := reg.Merchant(t.MID)
					fmt.Fprintf(w, "terminal %s  environment %s  serial %s  enabled %v  双免 %v  TMK %s\n", t.TID, t.Env, t.Serial, t.Enabled, t.QPS, terminals.MaskKey(t))
					fmt.Fprintf(w, "merchant %s  %s / %s  MCC %s  acquirer %s\n", m.MID, m.Name, m.NameEN, m.MCC, m.Acquirer)
					fmt.Fprintf(w, "  enabled %v  direct (直联) %v  双免 %v  refunds %v\n", m.Enabled, m.Direct, m.QPS, m.RefundAllowed)
					if !m.QPSRegistered.IsZero() {
						fmt.Fprintf(w, "  双免 whitelist registered %s (effective the next day)\n", m.QPSRegistered.Format("2006-01-02"))
					}
					r := reg.Rules
					fmt.Fprintf(w, "rules: no-PIN limit %s, cash MCCs %s, minimum SDK %s, refund window %d days\n",
						terminals.FormatAmount(reg.QPSLimit(m)), strings.Join(r.CashMCCs, " "), r.MinSDK, r.RefundWindowDays)
				}
				if !found {
					return fmt.Errorf("no terminal %s in the registry (version %d)", args[0], reg.Version)
				}
				return nil
			})
		},
	})
	var n int
	hist := &cobra.Command{
		Use:   "history",
		Short: "The registry's changes, newest first: version, when, who, what",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withRegistry(cmd.Context(), *cfgPath, func(s *registrydb.Store) error {
				rs, err := s.History(cmd.Context(), n)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				for _, r := range rs {
					fmt.Fprintf(w, "%d  %s  %s\n", r.Version, r.At.Local().Format("2006-01-02 15:04:05"), r.Who)
					for i, l := range r.Changes {
						if i == 20 && len(r.Changes) > 21 {
							fmt.Fprintf(w, "    … and %d more\n", len(r.Changes)-20)
							break
						}
						fmt.Fprintf(w, "    %s\n", l)
					}
				}
				return nil
			})
		},
	}
	hist.Flags().IntVarP(&n, "count", "n", 20, "how many changes")
	c.AddCommand(hist)
	return c
}

// withRegistry opens the registry database of the config. A database never written yet is
// seeded from the config file first, as `serve` does on its first start.
func withRegistry(ctx context.Context, cfgPath string, f func(*registrydb.Store) error) error {
	_, reg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	return withJournal(ctx, cfgPath, func(j *journal.Journal) error {
		s := registrydb.New(j.Pool, j.Vault)
		// a change from the command line is in the audit log like one from the console
		s.Audit = func(ctx context.Context, tx pgx.Tx, ch *registrydb.Change) error {
			return backoffice.AuditIn(ctx, tx, ch.Who, backoffice.ActConfigChange, strings.Join(ch.Lines(), "; "))
		}
		if v, err := s.Version(ctx); err != nil {
			return err
		} else if v == 0 {
			path, _ := configPath(cfgPath)
			if _, err := s.ImportFile(ctx, "file "+path+" (first use)", reg.Spec()); err != nil {
				return err
			}
		}
		return f(s)
	})
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown user"
}

// readImport reads an import file (YAML sections or CSV rows) as a spec; its errors name lines.
func readImport(path string) (*terminals.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		ms, ts, err := readCSV(bytes.NewReader(b), path)
		if err != nil {
			return nil, err
		}
		root := &yaml.Node{Kind: yaml.MappingNode}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "merchants"}, &yaml.Node{Kind: yaml.SequenceNode, Content: ms},
			&yaml.Node{Kind: yaml.ScalarNode, Value: "terminals"}, &yaml.Node{Kind: yaml.SequenceNode, Content: ts})
		doc.Kind, doc.Content = yaml.DocumentNode, []*yaml.Node{root}
	} else if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	spec, err := terminals.ParseSpec(&doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}

func readCSV(r io.Reader, path string) (ms, ts []*yaml.Node, err error) {
	recs, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) < 1 || len(recs[0]) == 0 || recs[0][0] != "kind" {
		return nil, nil, fmt.Errorf("%s: line 1: expected a header starting with kind", path)
	}
	head := recs[0]
	for i, rec := range recs[1:] {
		n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Line: i + 2}
		for j := 1; j < len(rec) && j < len(head); j++ {
			if rec[j] == "" {
				continue
			}
			v := &yaml.Node{Kind: yaml.ScalarNode, Value: rec[j], Line: i + 2}
			if head[j] == "mid" || head[j] == "tid" || head[j] == "acquirer" || head[j] == "mcc" {
				v.Style = yaml.DoubleQuotedStyle
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: head[j], Line: i + 2}, v)
		}
		switch rec[0] {
		case "merchant":
			ms = append(ms, n)
		case "terminal":
			ts = append(ts, n)
		default:
			return nil, nil, fmt.Errorf("%s: line %d: kind: expected merchant or terminal, found %q", path, i+2, rec[0])
		}
	}
	return ms, ts, nil
}
