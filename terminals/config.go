package terminals

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ConfigError names the line and key of a bad config entry and says why it is wrong.
type ConfigError struct {
	Line   int
	Key    string
	Reason string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Reason) }

type rulesYAML struct {
	CashMCCs         []string `yaml:"cash_mccs"`
	QPSLimit         string   `yaml:"qps_limit"`
	MinSDK           string   `yaml:"min_sdk_version"`
	RefundWindowDays *int     `yaml:"refund_window_days"`
}

type merchantYAML struct {
	MID      string `yaml:"mid"`
	Name     string `yaml:"name"`
	NameEN   string `yaml:"name_en"`
	MCC      string `yaml:"mcc"`
	Enabled  *bool  `yaml:"enabled"`
	Direct   *bool  `yaml:"direct"`
	QPS      bool   `yaml:"qps"`
	Refund   *bool  `yaml:"refund"`
	Acquirer string `yaml:"acquirer"`
}

type terminalYAML struct {
	TID    string `yaml:"tid"`
	MID    string `yaml:"mid"`
	Env    string `yaml:"env"`
	Serial string `yaml:"serial"`
	TMK    string `yaml:"tmk"`
	QPS    bool   `yaml:"qps"`
}

// Sections are the top-level config keys this package reads.
var Sections = []string{"rules", "qps_whitelist", "merchants", "terminals", "load_terminals"}

// Parse builds a registry from the rules, qps_whitelist, merchants and terminals sections of a
// config document (a YAML mapping node). Every error names its line.
func Parse(root *yaml.Node) (*Registry, error) {
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, &ConfigError{root.Line, "config", "expected a mapping of sections"}
	}
	rules := DefaultRules()
	var ms []Merchant
	var ts []Terminal
	whitelist := map[string]time.Time{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		var err error
		switch key.Value {
		case "rules":
			err = parseRules(val, &rules)
		case "qps_whitelist":
			err = parseWhitelist(val, whitelist)
		case "merchants":
			ms, err = parseMerchants(val)
		case "terminals":
			var more []Terminal
			more, err = parseTerminals(val)
			ts = append(ts, more...)
		case "load_terminals":
			var more []Terminal
			more, err = parseLoadTerminals(val)
			ts = append(ts, more...)
		}
		if err != nil {
			return nil, err
		}
	}
	byMID := map[string]*Merchant{}
	for i := range ms {
		byMID[ms[i].MID] = &ms[i]
	}
	for mid, day := range whitelist {
		m := byMID[mid]
		if m == nil {
			return nil, &ConfigError{lineOf(root, "qps_whitelist", mid), "qps_whitelist." + mid, "no merchant with this MID"}
		}
		m.QPSRegistered = day
	}
	for i, t := range ts {
		if byMID[t.MID] == nil {
			return nil, &ConfigError{itemLine(root, "terminals", i), fmt.Sprintf("terminals[%d].mid", i), fmt.Sprintf("no merchant %q", t.MID)}
		}
	}
	return NewRegistry(rules, ms, ts), nil
}

func parseRules(n *yaml.Node, r *Rules) error {
	var y rulesYAML
	if err := decodeStrict(n, "rules", &y); err != nil {
		return err
	}
	if y.CashMCCs != nil {
		for _, m := range y.CashMCCs {
			if !digits(m, 4) {
				return &ConfigError{keyLine(n, "cash_mccs"), "rules.cash_mccs", fmt.Sprintf("expected 4-digit MCCs, found %q", m)}
			}
		}
		r.CashMCCs = y.CashMCCs
	}
	if y.QPSLimit != "" {
		fen, err := ParseAmount(y.QPSLimit)
		if err != nil {
			return &ConfigError{keyLine(n, "qps_limit"), "rules.qps_limit", err.Error()}
		}
		r.QPSLimit = fen
	}
	if y.MinSDK != "" {
		v, err := ParseVersion(y.MinSDK)
		if err != nil {
			return &ConfigError{keyLine(n, "min_sdk_version"), "rules.min_sdk_version", err.Error()}
		}
		r.MinSDK = v
	}
	if y.RefundWindowDays != nil {
		if *y.RefundWindowDays < 1 || *y.RefundWindowDays > 3660 {
			return &ConfigError{keyLine(n, "refund_window_days"), "rules.refund_window_days", fmt.Sprintf("expected 1..3660 days, found %d", *y.RefundWindowDays)}
		}
		r.RefundWindowDays = *y.RefundWindowDays
	}
	return nil
}

func parseWhitelist(n *yaml.Node, out map[string]time.Time) error {
	if n.Kind != yaml.MappingNode {
		return &ConfigError{n.Line, "qps_whitelist", "expected a mapping of MID: registration date (YYYY-MM-DD)"}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		d, err := time.ParseInLocation("2006-01-02", v.Value, time.Local)
		if err != nil {
			return &ConfigError{v.Line, "qps_whitelist." + k.Value, fmt.Sprintf("expected a date YYYY-MM-DD, found %q", v.Value)}
		}
		out[k.Value] = d
	}
	return nil
}

func parseMerchants(n *yaml.Node) ([]Merchant, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, &ConfigError{n.Line, "merchants", "expected a list"}
	}
	seen := map[string]bool{}
	out := make([]Merchant, 0, len(n.Content))
	for i, item := range n.Content {
		key := fmt.Sprintf("merchants[%d]", i)
		var y merchantYAML
		if err := decodeStrict(item, key, &y); err != nil {
			return nil, err
		}
		bad := func(field, why string) error { return &ConfigError{keyLine(item, field), key + "." + field, why} }
		if len(y.MID) != 15 || !printableASCII(y.MID) {
			return nil, bad("mid", fmt.Sprintf("expected 15 characters, found %q", y.MID))
		}
		if seen[y.MID] {
			return nil, bad("mid", "repeats an earlier merchant")
		}
		seen[y.MID] = true
		mcc := y.MCC
		if mcc == "" {
			mcc = y.MID[7:11] // digits 8–11 of the MID
		}
		if !digits(mcc, 4) {
			return nil, bad("mcc", fmt.Sprintf("expected a 4-digit MCC, found %q", mcc))
		}
		if y.Acquirer == "" {
			y.Acquirer = "48020000"
		}
		if !digits(y.Acquirer, len(y.Acquirer)) || len(y.Acquirer) > 11 {
			return nil, bad("acquirer", fmt.Sprintf("expected up to 11 digits, found %q", y.Acquirer))
		}
		out = append(out, Merchant{MID: y.MID, Name: y.Name, NameEN: y.NameEN, MCC: mcc, Enabled: deref(y.Enabled, true),
			Direct: deref(y.Direct, true), QPS: y.QPS, RefundAllowed: deref(y.Refund, true), Acquirer: y.Acquirer})
	}
	return out, nil
}

func parseTerminals(n *yaml.Node) ([]Terminal, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, &ConfigError{n.Line, "terminals", "expected a list"}
	}
	seen := map[string]bool{}
	out := make([]Terminal, 0, len(n.Content))
	for i, item := range n.Content {
		key := fmt.Sprintf("terminals[%d]", i)
		var y terminalYAML
		if err := decodeStrict(item, key, &y); err != nil {
			return nil, err
		}
		bad := func(field, why string) error { return &ConfigError{keyLine(item, field), key + "." + field, why} }
		if len(y.TID) != 8 || !printableASCII(y.TID) {
			return nil, bad("tid", fmt.Sprintf("expected 8 characters, found %q", y.TID))
		}
		if seen[y.TID+y.MID] {
			return nil, bad("tid", "repeats an earlier terminal of the same merchant")
		}
		seen[y.TID+y.MID] = true
		env := Environment(y.Env)
		if env == "" {
			env = Production
		}
		if env != Production && env != Test {
			return nil, bad("env", fmt.Sprintf("expected production or test, found %q", y.Env))
		}
		if y.Serial == "" || len(y.Serial) > 50 {
			return nil, bad("serial", "expected a hardware serial number of 1 to 50 characters")
		}
		tmk, err := parseHexKey(y.TMK)
		if err != nil {
			return nil, bad("tmk", err.Error())
		}
		out = append(out, Terminal{TID: y.TID, MID: y.MID, Env: env, Serial: y.Serial, TMK: tmk, QPS: y.QPS})
	}
	return out, nil
}

// decodeStrict decodes a mapping node into out, rejecting keys out does not know.
func decodeStrict(n *yaml.Node, where string, out any) error {
	if n.Kind != yaml.MappingNode {
		return &ConfigError{n.Line, where, "expected a mapping"}
	}
	known := map[string]bool{}
	t := reflect.TypeOf(out).Elem()
	for i := 0; i < t.NumField(); i++ {
		known[strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]] = true
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !known[k.Value] {
			return &ConfigError{k.Line, where + "." + k.Value, "unknown key"}
		}
	}
	if err := n.Decode(out); err != nil {
		return &ConfigError{n.Line, where, strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  ")}
	}
	return nil
}

func keyLine(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

func lineOf(root *yaml.Node, section, key string) int {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == section {
			return keyLine(root.Content[i+1], key)
		}
	}
	return root.Line
}

func itemLine(root *yaml.Node, section string, idx int) int {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == section && idx < len(root.Content[i+1].Content) {
			return root.Content[i+1].Content[idx].Line
		}
	}
	return root.Line
}

func deref(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func digits(s string, n int) bool {
	if len(s) != n || n == 0 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return true
}

// ParseAmount reads a CNY amount "1000.00" (or "1000") into fen.
func ParseAmount(s string) (int64, error) {
	yuan, fen, hasFen := strings.Cut(strings.TrimSpace(s), ".")
	if hasFen && (len(fen) == 0 || len(fen) > 2) {
		return 0, fmt.Errorf("expected an amount in CNY with up to 2 decimals, found %q", s)
	}
	fen = (fen + "00")[:2]
	y, err1 := strconv.ParseUint(yuan, 10, 40)
	f, err2 := strconv.ParseUint(fen, 10, 8)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("expected an amount in CNY with up to 2 decimals, found %q", s)
	}
	return int64(y*100 + f), nil
}

// FormatAmount writes fen as CNY.
func FormatAmount(fen int64) string { return fmt.Sprintf("%d.%02d", fen/100, fen%100) }

type loadYAML struct {
	Count int    `yaml:"count"`
	MID   string `yaml:"mid"`
	Env   string `yaml:"env"`
	TMK   string `yaml:"tmk"`
	QPS   bool   `yaml:"qps"`
}

// parseLoadTerminals generates count terminals for load tests: TIDs 9xxxxxxx, serials
// LOAD-xxxxxxx, all of one merchant and TMK. `shoudan pos load` drives them.
func parseLoadTerminals(n *yaml.Node) ([]Terminal, error) {
	var y loadYAML
	if err := decodeStrict(n, "load_terminals", &y); err != nil {
		return nil, err
	}
	if y.Count < 0 || y.Count > 9999999 {
		return nil, &ConfigError{keyLine(n, "count"), "load_terminals.count", fmt.Sprintf("expected 0..9999999, found %d", y.Count)}
	}
	tmk, err := parseHexKey(y.TMK)
	if err != nil && y.Count > 0 {
		return nil, &ConfigError{keyLine(n, "tmk"), "load_terminals.tmk", err.Error()}
	}
	env := Environment(y.Env)
	if env == "" {
		env = Production
	}
	out := make([]Terminal, y.Count)
	for i := range out {
		out[i] = Terminal{TID: LoadTID(i), MID: y.MID, Env: env, Serial: fmt.Sprintf("LOAD-%07d", i+1), TMK: tmk, QPS: y.QPS}
	}
	return out, nil
}

// LoadTID is the TID of generated load terminal i (0-based).
func LoadTID(i int) string { return fmt.Sprintf("9%07d", i+1) }
