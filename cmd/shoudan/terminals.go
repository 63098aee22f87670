package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/shoudan/shoudan/switch/app"
	"github.com/shoudan/shoudan/terminals"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

func terminalsCmd(cfgPath *string) *cobra.Command {
	c := &cobra.Command{Use: "terminals", Short: "The merchant and terminal registry: import, list, show"}
	c.AddCommand(&cobra.Command{
		Use:   "import FILE",
		Short: "Upsert merchants and terminals from a YAML (merchants:/terminals: lists) or CSV file into the config",
		Long: `Upsert merchants and terminals into the config file. A running switch watches the file and
applies the change without a restart. YAML: the config's own merchants: and terminals: lists.
CSV: a header row with "kind" (merchant or terminal) and the YAML keys as columns, e.g.
  kind,mid,name,name_en,mcc,qps,tid,env,serial,tmk
Nothing is written unless the whole resulting config is valid.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := configPath(*cfgPath)
			if err != nil {
				return err
			}
			ms, ts, err := readImport(args[0])
			if err != nil {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			out, added, updated, err := upsert(src, ms, ts)
			if err != nil {
				return err
			}
			if _, _, err := app.Parse(out); err != nil {
				return fmt.Errorf("import refused, nothing written: the config would be invalid: %w", err)
			}
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, out, 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmp, path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d added, %d updated (a running switch applies it now)\n", path, added, updated)
			return nil
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List merchants and terminals",
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := loadRegistry(*cfgPath)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "MID\tname\tname_en\tMCC\tenabled\tdirect\t双免\twhitelisted\trefund\tacquirer")
			for _, m := range reg.Merchants() {
				wl := "-"
				if !m.QPSRegistered.IsZero() {
					wl = m.QPSRegistered.Format("2006-01-02")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%v\t%v\t%s\t%v\t%s\n", m.MID, m.Name, m.NameEN, m.MCC, m.Enabled, m.Direct, m.QPS, wl, m.RefundAllowed, m.Acquirer)
			}
			fmt.Fprintln(tw, "\nTID\tMID\tenv\tserial\t双免\tTMK")
			for _, t := range reg.Terminals() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", t.TID, t.MID, t.Env, t.Serial, t.QPS, terminals.MaskKey(t.TMK))
			}
			return tw.Flush()
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "show TID",
		Short: "Show one terminal, its merchant and the rules that apply to it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := loadRegistry(*cfgPath)
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
				fmt.Fprintf(w, "terminal %s  environment %s  serial %s  双免 %v  TMK %s\n", t.TID, t.Env, t.Serial, t.QPS, terminals.MaskKey(t.TMK))
				fmt.Fprintf(w, "merchant %s  %s / %s  MCC %s  acquirer %s\n", m.MID, m.Name, m.NameEN, m.MCC, m.Acquirer)
				fmt.Fprintf(w, "  enabled %v  direct (直联) %v  双免 %v  refunds %v\n", m.Enabled, m.Direct, m.QPS, m.RefundAllowed)
				if !m.QPSRegistered.IsZero() {
					fmt.Fprintf(w, "  双免 whitelist registered %s (effective the next day)\n", m.QPSRegistered.Format("2006-01-02"))
				}
				r := reg.Rules
				fmt.Fprintf(w, "rules: no-PIN limit %s, cash MCCs %s, minimum SDK %s, refund window %d days\n",
					terminals.FormatAmount(r.QPSLimit), strings.Join(r.CashMCCs, " "), r.MinSDK, r.RefundWindowDays)
			}
			if !found {
				return fmt.Errorf("no terminal %s in the config", args[0])
			}
			return nil
		},
	})
	return c
}

func loadRegistry(cfgPath string) (*terminals.Registry, error) {
	_, reg, err := loadConfig(cfgPath)
	return reg, err
}

// readImport reads merchants and terminals as YAML mapping nodes.
func readImport(path string) (ms, ts []*yaml.Node, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		return readCSV(bytes.NewReader(b), path)
	}
	var doc struct {
		Merchants []yaml.Node `yaml:"merchants"`
		Terminals []yaml.Node `yaml:"terminals"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	for i := range doc.Merchants {
		ms = append(ms, &doc.Merchants[i])
	}
	for i := range doc.Terminals {
		ts = append(ts, &doc.Terminals[i])
	}
	return ms, ts, nil
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
		n := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		for j := 1; j < len(rec) && j < len(head); j++ {
			if rec[j] == "" {
				continue
			}
			v := &yaml.Node{Kind: yaml.ScalarNode, Value: rec[j]}
			if head[j] == "mid" || head[j] == "tid" || head[j] == "acquirer" || head[j] == "mcc" {
				v.Style = yaml.DoubleQuotedStyle
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: head[j]}, v)
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

func field(n *yaml.Node, key string) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// upsert merges merchants (keyed by mid) and terminals (tid + mid) into a config document,
// keeping its comments and layout.
func upsert(src []byte, ms, ts []*yaml.Node) ([]byte, int, int, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, 0, 0, err
	}
	root := doc.Content[0]
	section := func(name string) *yaml.Node {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == name {
				return root.Content[i+1]
			}
		}
		s := &yaml.Node{Kind: yaml.SequenceNode}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, s)
		return s
	}
	added, updated := 0, 0
	merge := func(sec *yaml.Node, items []*yaml.Node, key func(*yaml.Node) string) {
		for _, it := range items {
			it.Style = yaml.FlowStyle
			done := false
			for i, old := range sec.Content {
				if key(old) == key(it) {
					sec.Content[i] = it
					updated++
					done = true
					break
				}
			}
			if !done {
				sec.Content = append(sec.Content, it)
				added++
			}
		}
	}
	merge(section("merchants"), ms, func(n *yaml.Node) string { return field(n, "mid") })
	merge(section("terminals"), ts, func(n *yaml.Node) string { return field(n, "tid") + "|" + field(n, "mid") })
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, 0, 0, err
	}
	return buf.Bytes(), added, updated, nil
}
